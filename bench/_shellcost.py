"""Instructions per echoed message through the connection shell, in process (for callgrind).

    valgrind --tool=callgrind python bench/_shellcost.py VARIANT N

The receive side is an asyncio.Queue as in uvicorn's sansio implementation; the send side a
coroutine that completes at once, as uvicorn's does while the socket is writable.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_ws import BackpressureMiddleware, HeartbeatMiddleware, RateLimitMiddleware
from asgi_ws.connection import attach_session
from bench.apps import echo_bare, echo_stack
from tests.support.asgi import ws_scope


async def shell(scope, receive, send):  # type: ignore[no-untyped-def]
    scope, conn, receive, send = attach_session(scope, receive, send)
    await conn.run(echo_bare, scope, receive, send)


async def shell_recv(scope, receive, send):  # type: ignore[no-untyped-def]
    scope, conn, wrapped_receive, _ = attach_session(scope, receive, send)
    await conn.run(echo_bare, scope, wrapped_receive, send)


async def shell_send(scope, receive, send):  # type: ignore[no-untyped-def]
    scope, conn, _, wrapped_send = attach_session(scope, receive, send)
    await conn.run(echo_bare, scope, receive, wrapped_send)


VARIANTS = {
    "shell_recv": shell_recv,
    "shell_send": shell_send,
    "bare": echo_bare,
    "shell": shell,
    "heartbeat": HeartbeatMiddleware(echo_bare),
    "backpressure": BackpressureMiddleware(echo_bare),
    "ratelimit": RateLimitMiddleware(echo_bare, rate=1e6, burst=1e6, max_message_size=1 << 20),
    "rl_size": RateLimitMiddleware(echo_bare, max_message_size=1 << 20),
    "rl_rate": RateLimitMiddleware(echo_bare, rate=1e6, burst=1e6),
    "stack": echo_stack,
}


async def main(variant: str, n: int) -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    writes = 0

    async def send(message: dict[str, object]) -> None:
        nonlocal writes
        writes += 1

    queue.put_nowait({"type": "websocket.connect"})
    for _ in range(n):
        queue.put_nowait({"type": "websocket.receive", "text": "x" * 80})
    queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await VARIANTS[variant](ws_scope(), queue.get, send)
    assert writes == n + 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
