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

DEFAULT_SECRET_PARAMS = ("ticket", "token", "access_token", "resume_token", "ws_resume")
REDACTED = "[redacted]"


class RedactQueryParams(logging.Filter):
    """A logging filter replacing the values of secret query parameters with ``[redacted]``.

    It rewrites the message and its string arguments in place and never drops a record.

    Args:
        params: names of the query parameters to mask.
    """

    def __init__(self, params: Iterable[str] = DEFAULT_SECRET_PARAMS) -> None:
        super().__init__()
        names = "|".join(re.escape(p) for p in params)
        self._pattern = re.compile(rf"([?&](?:{names})=)[^&\s\"']*")

    def redact(self, text: str) -> str:
        """Return ``text`` with the values of the secret parameters masked."""
        if "=" not in text:
            return text
        return self._pattern.sub(rf"\g<1>{REDACTED}", text)

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
