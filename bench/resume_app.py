"""The server of ``bench/resume.py``: a stream of numbered ~100-byte messages on demand.

``emit N`` sends N messages as fast as the connection takes them; ``join`` joins the room
(``ASGI_WS_BENCH_BROKER``, a history broker), ``publish N`` publishes N messages to it. Under ``ResumeMiddleware``
with the store named by ``ASGI_WS_BENCH_STORE``; a client that does not opt in
(no ``ws_resume``) gets the very same app without resumption: the baseline.
"""

from __future__ import annotations

import os
from typing import Any

from asgi_ws import BackpressureMiddleware, ResumeMiddleware, Rooms

PAYLOAD = "x" * 90


ROOMS = Rooms(os.environ.get("ASGI_WS_BENCH_BROKER", "memory://?history=10000"))


async def stream(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        command, _, count = (message.get("text") or "emit 0").partition(" ")
        if command == "join":  # the room of bench/resume.py --room-replay
            await ROOMS.join("room", scope)
            await send({"type": "websocket.send", "text": "joined"})
        elif command == "publish":
            for i in range(int(count)):
                await ROOMS.publish("room", f"{i:08d}{PAYLOAD}")
            await send({"type": "websocket.send", "text": "published"})
        else:
            for i in range(int(count)):
                await send({"type": "websocket.send", "text": f"{i:08d}{PAYLOAD}"})


app = ResumeMiddleware(
    BackpressureMiddleware(stream, max_messages=10_000, policy="block"),
    secret_keys=["bench-key"],
    rooms=ROOMS,
    store=os.environ.get("ASGI_WS_BENCH_STORE", "memory://"),
    max_messages=100_000,
    max_bytes=64 * 1024 * 1024,
    max_pending=int(os.environ.get("ASGI_WS_BENCH_MAX_PENDING", "1000")),
)
