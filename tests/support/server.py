"""Run a real uvicorn server on 127.0.0.1 inside the test's event loop.

The server listens on a free port chosen by the kernel and speaks real HTTP/WebSocket over
real sockets; running it in the test's own loop lets a test observe the application's side
(what it received, how it was disconnected) with plain asyncio primitives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn

#: Every WebSocket implementation uvicorn ships; e2e tests run under each.
WS_IMPLS = ("websockets", "websockets-sansio", "wsproto")


@dataclass
class RunningServer:
    host: str
    port: int
    server: uvicorn.Server

    def ws_url(self, path: str = "/") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, ws: str = "websockets-sansio", graceful: bool = False, **config: Any
) -> AsyncIterator[RunningServer]:
    """Serve ``app`` with uvicorn's ``ws`` implementation until the block exits.

    ``graceful`` waits for connections and runs the lifespan shutdown; otherwise the server
    is stopped at once (tests do not wait for lingering connections).
    """
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "ws": ws, "lifespan": "off", "log_level": "warning"}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the start-up error
                raise RuntimeError("uvicorn exited before starting")
            await asyncio.sleep(0.01)
        sock = server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        yield RunningServer(host, port, server)
    finally:
        server.should_exit = True
        server.force_exit = not graceful
        try:
            await asyncio.wait_for(task, timeout=10)
        except asyncio.TimeoutError:
            logging.getLogger(__name__).warning("uvicorn did not stop within 10 s")
            task.cancel()
