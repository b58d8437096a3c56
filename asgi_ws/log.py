"""Keep credentials out of server logs.

asgi_ws never logs a query string, a header value or a token. Servers do: uvicorn writes
``"WebSocket /ws?ticket=..." [accepted]`` for every handshake, and proxies log request
lines too. :class:`RedactQueryParams` is a logging filter that masks chosen query
parameters in any record; :func:`uvicorn_log_config` returns uvicorn's default logging
configuration with the filter installed on its handlers.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from typing import Any

from ._scope import query_name

DEFAULT_SECRET_PARAMS = ("ticket", "token", "access_token", "resume_token", "ws_resume")
REDACTED = "[redacted]"


#: One ``name=value`` pair of a query string inside a log line. A value runs to the next ``&``
#: or space (request targets hold no spaces), or to a quote followed by a space (the end of a
#: quoted request line, ``"GET /ws?a=1" 200``); a name holds no ``?``, so a pair never starts
#: before the query does.
_PAIR = re.compile(r"""[?&]([^&=? ]*)=((?:[^&"' ]|["'](?! ))*)""")


class RedactQueryParams(logging.Filter):
    """A logging filter replacing the values of secret query parameters with ``[redacted]``.

    A parameter is recognised by its decoded name, with the very function that reads
    credentials from the query string (:func:`asgi_ws._scope.query_name`): ``?%74oken=...``
    authenticates as ``token``, so it is masked as ``token``. Every occurrence is masked,
    not only the first. It rewrites the message and its string arguments in place and never
    drops a record.

    Args:
        params: names of the query parameters to mask (decoded names).
    """

    def __init__(self, params: Iterable[str] = DEFAULT_SECRET_PARAMS) -> None:
        super().__init__()
        self.params = frozenset(params)

    def _mask(self, match: re.Match[str]) -> str:
        if query_name(match[1]) not in self.params:
            return match[0]
        return f"{match[0][: match.start(2) - match.start()]}{REDACTED}"

    def redact(self, text: str) -> str:
        """Return ``text`` with the values of the secret parameters masked."""
        if "=" not in text:
            return text
        return _PAIR.sub(self._mask, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: self.redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


def uvicorn_log_config(params: Iterable[str] = DEFAULT_SECRET_PARAMS) -> dict[str, Any]:
    """Return uvicorn's default ``log_config`` with :class:`RedactQueryParams` on every handler,
    and asgi_ws's own loggers writing to uvicorn's default handler at INFO.

    Use it as ``uvicorn.run(app, log_config=uvicorn_log_config())``, or dump it to a file
    for ``uvicorn --log-config``.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["asgi_ws_redact"] = {
        "()": "asgi_ws.log.RedactQueryParams",
        "params": list(params),
    }
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("asgi_ws_redact")
    # asgi_ws's own lines (refusals, broker outages and their loss windows) go to the same handler.
    config.setdefault("loggers", {})["asgi_ws"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def redact_loggers(
    names: Iterable[str] = ("uvicorn.error", "uvicorn.access"), params: Iterable[str] = DEFAULT_SECRET_PARAMS
) -> RedactQueryParams:
    """Attach one :class:`RedactQueryParams` to the named loggers (for a server already configured)."""
    redactor = RedactQueryParams(params)
    for name in names:
        logging.getLogger(name).addFilter(redactor)
    return redactor


__all__ = ["DEFAULT_SECRET_PARAMS", "RedactQueryParams", "redact_loggers", "uvicorn_log_config"]
