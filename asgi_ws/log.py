"""Logs a user can trust: no credentials, no false errors, the library's lines where the server's go.

asgi_ws never logs a query string, a header value or a token. Servers do: uvicorn writes
``"WebSocket /ws?ticket=..." [accepted]`` for every handshake, and proxies log request
lines too. :class:`RedactQueryParams` is a logging filter that masks chosen query
parameters in any record; a middleware reading a credential from the query installs one on
uvicorn's loggers itself (:func:`redact_server_logs`); :func:`uvicorn_log_config` returns
uvicorn's default logging configuration with the filter installed on its handlers.

:func:`settle`, run once per process at the first connection (or refusal, or Rooms start),
drops the one ERROR uvicorn's ``websockets-sansio`` writes after every denial response
(:class:`SpuriousHandshakeError`) and, when nothing else would print them, sends asgi_ws's
own lines to uvicorn's log (:class:`ServerLogBridge`). ``docs/logging.md`` says why.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
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


# -- on by default -------------------------------------------------------------------------------

#: The loggers uvicorn writes request targets to, query strings included (uvicorn 0.54 logs
#: every handshake and request line on them directly, never on a child logger).
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access")

_server_redactor: RedactQueryParams | None = None


def redact_server_logs(params: Iterable[str]) -> RedactQueryParams:
    """Mask ``params`` in uvicorn's log lines from now on; idempotent, names accumulate.

    AuthMiddleware (with a query backend) and ResumeMiddleware call it when they are
    constructed, unless given ``redact_logs=False``. One filter is added to the *loggers*
    :data:`SERVER_LOGGERS`, not to their handlers: a logger keeps its filters through
    ``logging.config.dictConfig`` and ``fileConfig``, which replace handlers, so the filter
    holds whether uvicorn configures logging before the application is imported
    (``uvicorn app:app``) or after it was built (``uvicorn.run(app)``), and under any
    ``--log-config``.
    """
    global _server_redactor
    redactor = _server_redactor
    if redactor is None:
        redactor = _server_redactor = RedactQueryParams(params)
    else:
        redactor.params = redactor.params | frozenset(params)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if redactor not in logger.filters:
            logger.addFilter(redactor)
    return redactor


#: What uvicorn 0.54's ``websockets-sansio`` logs at ERROR after every denial response: it
#: never marks the handshake complete when it sends one (Kludex/uvicorn#3138, open). The
#: client got the application's status; nothing failed.
SPURIOUS_HANDSHAKE_ERROR = "ASGI callable returned without completing handshake."

#: Set by :func:`asgi_ws.deny.deny` in the connection's task once a denial response is sent.
DENIAL_SENT: ContextVar[bool] = ContextVar("asgi_ws_denial_sent", default=False)


class SpuriousHandshakeError(logging.Filter):
    """Drop uvicorn's :data:`SPURIOUS_HANDSHAKE_ERROR`, and only after asgi_ws sent a denial response.

    uvicorn logs it in the connection's task right after the application returns, so the
    context variable :func:`~asgi_ws.deny.deny` set in that task tells this connection's
    record from another's. The same message for an application that really returned without
    answering is kept; so is any other record. Once uvicorn fixes the bug the message no
    longer follows a denial and the filter matches nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == SPURIOUS_HANDSHAKE_ERROR and record.levelno == logging.ERROR and DENIAL_SENT.get())


class ServerLogBridge(logging.Handler):
    """A handler on the ``asgi_ws`` logger handing its records to uvicorn's ``uvicorn.error``.

    Installed by :func:`settle` only when asgi_ws's lines would otherwise be lost (uvicorn's
    default configuration sets up ``uvicorn.*`` only: Python's last resort prints WARNING and
    above, bare, and drops INFO). It stands aside as soon as logging is configured: a handler
    on the root logger or another one on ``asgi_ws`` (records then propagate there).
    """

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if logging.root.handlers or len(logging.getLogger(LIBRARY_LOGGER).handlers) > 1:
            return
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


LIBRARY_LOGGER = "asgi_ws"
_spurious = SpuriousHandshakeError()
#: True once :func:`settle` ran in this process (checked on the connection path).
settled = False


def settle(*, early: bool = False) -> None:
    """Once per process, at the first connection or refusal (logging is configured by then).

    ``early`` (Rooms' start, which may run before the server configured logging): decide
    only if some logging is configured already, else leave it to the first connection.

    - Add :class:`SpuriousHandshakeError` to ``uvicorn.error``.
    - If the ``asgi_ws`` logger has no handler, propagates, and the root logger has none
      either, while ``uvicorn.error`` has some (uvicorn's default logging), add a
      :class:`ServerLogBridge` to ``asgi_ws`` and give it ``uvicorn.error``'s level when it
      has none: asgi_ws's lines then appear in uvicorn's stream, format and ``--log-level``.
      Configure logging (``logging.basicConfig()``, a handler on ``asgi_ws``, even a
      ``NullHandler``) and it does nothing.
    """
    global settled
    if settled:
        return
    server = logging.getLogger("uvicorn.error")
    if early and not server.hasHandlers():  # uvicorn.error's chain ends at the root
        return
    settled = True
    if _spurious not in server.filters:
        server.addFilter(_spurious)
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.handlers or logging.root.handlers or not library.propagate or not server.hasHandlers():
        return
    library.addHandler(ServerLogBridge(server))
    if library.level == logging.NOTSET:
        library.setLevel(server.getEffectiveLevel())


__all__ = [
    "DEFAULT_SECRET_PARAMS",
    "RedactQueryParams",
    "ServerLogBridge",
    "SpuriousHandshakeError",
    "redact_loggers",
    "redact_server_logs",
    "settle",
    "uvicorn_log_config",
]
