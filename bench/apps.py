"""Servers measured by the live-policy benchmarks, as uvicorn import strings.

``echo_*``: echo every message. ``idle_*``: accept and wait. ``*_bare`` is the endpoint alone;
``*_stack`` the same endpoint behind Heartbeat + Backpressure + RateLimit (limits high
enough never to bite: the benchmark measures their cost, not their effect); ``idle_full``
adds Origin + Auth + Subprotocol in front.
"""

from __future__ import annotations

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    SubprotocolMiddleware,
)
from asgi_ws.auth import SignedTicket
from asgi_ws.types import ASGIApp, Receive, Scope, Send

SECRET = "bench-secret-key-0123456789abcdef"
ORIGIN = "https://app.example.com"


async def echo_bare(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def idle_bare(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def session_stack(app: ASGIApp) -> ASGIApp:
    return RateLimitMiddleware(
        BackpressureMiddleware(HeartbeatMiddleware(app, interval=20, timeout=20), max_messages=1000),
        rate=1_000_000,
        burst=1_000_000,
        max_message_size=1_048_576,
    )


def handshake_stack(app: ASGIApp) -> ASGIApp:
    return OriginMiddleware(
        AuthMiddleware(
            SubprotocolMiddleware(app, supported=["chat.v2"], required=False),
            backend=SignedTicket([SECRET], max_age=3600),
        ),
        allow_origins=[ORIGIN],
    )


echo_stack = session_stack(echo_bare)
idle_stack = session_stack(idle_bare)
idle_full = handshake_stack(session_stack(idle_bare))
