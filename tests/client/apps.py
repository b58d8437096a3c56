"""Small ASGI applications for the client tests; import strings for uvicorn in a child process."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from asgi_ws import HeartbeatMiddleware
from asgi_ws.types import Receive, Scope, Send


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, say ``ready <pid>``, then echo every data frame back."""
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"ready {os.getpid()}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({**message, "type": "websocket.send"})


#: The echo app behind a heartbeat that pings after 0.5 s of silence (``uvicorn tests.client.apps:echo_hb``).
echo_hb = HeartbeatMiddleware(echo, interval=0.5, timeout=0.5)


def closing_with(code: int, reason: str = "", *, frames: Iterable[str] = (), log: list[Any] | None = None) -> Any:
    """An app that accepts, sends ``frames``, then closes with ``code``; ``log`` gets each query string."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if log is not None:
            log.append(scope["query_string"].decode())
        await receive()
        await send({"type": "websocket.accept"})
        for frame in frames:
            await send({"type": "websocket.send", "text": frame})
        await send({"type": "websocket.close", "code": code, "reason": reason})

    return app


def refusing_with(status: int, log: list[str] | None = None) -> Any:
    """An app refusing every handshake with HTTP ``status`` (the denial-response extension)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if log is not None:
            log.append(scope["query_string"].decode())
        await receive()
        await send({"type": "websocket.http.response.start", "status": status, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"refused by the test"})

    return app
