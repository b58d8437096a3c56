"""The one way asgi_ws refuses a WebSocket handshake.

Every handshake middleware refuses through :func:`deny`, so refusals look the same whatever
refused them: a real HTTP status with a short plain-text body where the server supports the
ASGI ``websocket.http.response`` extension (uvicorn, hypercorn, Starlette's TestClient), and
otherwise a ``websocket.close`` before accept, which the server answers with HTTP 403
(daphne). The reason goes to the ``asgi_ws.handshake`` logger as well, with the client
address and the path but never the query string, where tickets and tokens travel, and with
the cause in full (the refused origin, the failed check, the offered subprotocols) where
the client is only given the short reason. Refusals that mean the server cannot serve
(5xx: at capacity, an authentication backend down, a drain) are logged at WARNING, at most
one line a minute for each refusing middleware, status, reason and cause, with how many it
stands for (``asgi_ws._repeated``: a drain refuses every newcomer, a cap refuses a whole
flood); the others at INFO, each. Every refusal is counted in :data:`REFUSED` (Prometheus:
``asgi_ws_handshakes_refused_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from . import log as _log
from ._repeated import RepeatedLog
from ._scope import client_address, log_path, log_safe
from .close_codes import CloseCode, truncate_reason
from .exceptions import HandshakeRejected
from .types import Scope, Send

logger = logging.getLogger("asgi_ws.handshake")

DENIAL_EXTENSION = "websocket.http.response"

#: Handshakes refused in this process by (refused_by, status, reason), read on scrape by
#: :class:`asgi_ws.metrics.AsgiWsCollector`. Reasons are the library's own short strings (and
#: those an application's hooks raise); past :data:`MAX_REFUSAL_KINDS` kinds, new ones are
#: counted under the reason ``"other"``, so the label set stays bounded whatever happens.
REFUSED: dict[tuple[str, int, str], int] = {}
MAX_REFUSAL_KINDS = 100

#: 5xx refusals: one line at once, then one a minute per (refused_by, status, reason, detail).
_server_refusals = RepeatedLog(logger, 60.0)


def _count(refused_by: str, status: int, reason: str) -> None:
    key = (refused_by, status, reason)
    count = REFUSED.get(key)
    if count is None and len(REFUSED) >= MAX_REFUSAL_KINDS:
        key = (refused_by, status, "other")
        count = REFUSED.get(key)
    REFUSED[key] = (count or 0) + 1


def supports_denial_response(scope: Scope) -> bool:
    """Return True when the server lets the application answer the handshake with any HTTP response."""
    return DENIAL_EXTENSION in (scope.get("extensions") or {})


async def deny(
    scope: Scope,
    send: Send,
    status: int,
    reason: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    refused_by: str = "asgi_ws",
    detail: str = "",
) -> None:
    """Refuse the handshake of ``scope`` before accept.

    Args:
        scope: the WebSocket scope being refused.
        send: the ASGI ``send`` callable of the connection.
        status: HTTP status to answer with (401, 403, 400...). Servers without the denial
            extension always answer 403.
        reason: short reason for the response body, the close reason and the log line.
            Never put a credential in it.
        headers: extra response headers, e.g. ``("www-authenticate", "Bearer")``.
        refused_by: name of the refusing middleware, for the log line.
        detail: the cause in full, for the log line only (never sent to the client). Never
            a credential; values the client chose go through ``_scope.log_safe``.
    """
    if not _log.settled:
        _log.settle()
    _count(refused_by, status, reason)
    line = '%s - "WebSocket %s" refused by %s: %d %s%s'
    args = (
        client_address(scope),
        log_path(scope),
        refused_by,
        status,
        reason if reason.isprintable() else log_safe(reason),
        f" ({detail})" if detail else "",
    )
    if status >= 500:
        _server_refusals.warning(line, *args, key=(refused_by, status, reason, detail))
    else:
        logger.info(line, *args)
    if supports_denial_response(scope):
        body = reason.encode("utf-8")
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw_headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        _log.DENIAL_SENT.set(True)  # uvicorn's spurious ERROR for this connection is dropped
    else:
        # Before accept the close code is not sent to the client; the server answers 403.
        await send(
            {"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION), "reason": truncate_reason(reason)}
        )


async def deny_with(
    scope: Scope, send: Send, exc: HandshakeRejected, *, refused_by: str, detail: str | None = None
) -> None:
    """Refuse the handshake with the status, reason and headers carried by ``exc``.

    ``detail`` replaces ``exc.detail`` in the log line (the refusing middleware may know more
    of the cause than the part that raised).
    """
    detail = exc.detail if detail is None else detail
    await deny(scope, send, exc.status, exc.reason, headers=exc.headers, refused_by=refused_by, detail=detail)


__all__ = ["REFUSED", "deny", "deny_with", "supports_denial_response"]
