"""Servers measured by ``bench/handshake.py``: one echo endpoint, bare and behind the handshake middlewares."""

from __future__ import annotations

from asgi_ws import AuthMiddleware, OriginMiddleware, SubprotocolMiddleware
from asgi_ws.auth import SignedTicket
from asgi_ws.types import Receive, Scope, Send

SECRET = "bench-secret-key-0123456789abcdef"
ORIGIN = "https://app.example.com"


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, echo every message until the client closes."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "chat.v2" if scope.get("subprotocols") else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({**message, "type": "websocket.send"})


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})  # the subprotocol comes from SubprotocolMiddleware
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({**message, "type": "websocket.send"})


stack = OriginMiddleware(
    AuthMiddleware(
        SubprotocolMiddleware(_echo, supported=["chat.v2", "chat.v1"]),
        backend=SignedTicket([SECRET], max_age=300),
    ),
    allow_origins=[ORIGIN, "https://*.example.net"],
)
