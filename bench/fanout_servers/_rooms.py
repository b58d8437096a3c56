"""asgi_ws Rooms set up as docs/rooms.md says: Rooms started in the lifespan, members behind
BackpressureMiddleware (max_messages=1000, drop_oldest), ``join`` after ``accept``, ``publish``
(``count`` times, back to back, for ``/trigger?count=N``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws import BackpressureMiddleware, ResumeMiddleware, Rooms

from ._common import GROUP, message


def make_app(broker: str, session_store: str | None = None) -> Starlette:
    """``session_store``: members are resumable sessions (ResumeMiddleware on that store)."""
    rooms = Rooms(broker)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with rooms:  # connects the broker
            yield

    async def member(websocket: WebSocket) -> None:
        await websocket.accept()
        await rooms.join(GROUP, websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass  # leaving the rooms is automatic

    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(rooms.local_count(GROUP)))

    async def trigger(request: Request) -> PlainTextResponse:
        msg = message(request.query_params.get("tag", "r0"))
        start = time.perf_counter()
        handed = 0
        for _ in range(int(request.query_params.get("count", "1"))):
            handed += await rooms.publish(GROUP, msg)
        return PlainTextResponse(f"{handed} {time.perf_counter() - start:.6f}")

    middleware = [Middleware(BackpressureMiddleware, max_messages=1000, policy="drop_oldest")]
    if session_store is not None:  # a long window: no token renewal frames during the run
        resume = Middleware(ResumeMiddleware, secret_keys=["fanout-key"], store=session_store, rooms=rooms, window=3600)
        middleware.insert(0, resume)
    app = Starlette(
        routes=[WebSocketRoute("/ws", member), Route("/count", count), Route("/trigger", trigger)],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.rooms = rooms
    return app
