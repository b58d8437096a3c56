"""The one way asgi_ws refuses a WebSocket handshake.

Every handshake middleware refuses through :func:`deny`, so refusals look the same whatever
refused them: a real HTTP status with a short plain-text body where the server supports the
ASGI ``websocket.http.response`` extension (uvicorn, hypercorn, Starlette's TestClient), and
otherwise a ``websocket.close`` before accept, which the server answers with HTTP 403
(daphne). The reason goes to the ``asgi_ws.handshake`` logger as well, with the client
address and the path but never the query string, where tickets and tokens travel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ._scope import client_address, log_path
from .close_codes import CloseCode, truncate_reason
from .exceptions import HandshakeRejected
from .types import Scope, Send

logger = logging.getLogger("asgi_ws.handshake")

DENIAL_EXTENSION = "websocket.http.response"


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
    """
    logger.info(
        '%s - "WebSocket %s" refused by %s: %d %s',
        client_address(scope),
        log_path(scope),
        refused_by,
        status,
        reason,
    )
    if supports_denial_response(scope):
        body = reason.encode("utf-8")
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw_headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:
        # Before accept the close code is not sent to the client; the server answers 403.
        await send(
            {"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION), "reason": truncate_reason(reason)}
        )


async def deny_with(scope: Scope, send: Send, exc: HandshakeRejected, *, refused_by: str) -> None:
    """Refuse the handshake with the status, reason and headers carried by ``exc``."""
    await deny(scope, send, exc.status, exc.reason, headers=exc.headers, refused_by=refused_by)


__all__ = ["deny", "deny_with", "supports_denial_response"]
