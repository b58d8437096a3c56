"""The ceiling: a Starlette endpoint keeps its accepted WebSockets; the trigger loops over them
(``for ws in members: await ws.send_text(msg)``), ``count`` times for ``/trigger?count=N``."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ._common import message

members: dict[WebSocket, None] = {}  # insertion-ordered, O(1) removal


async def member(websocket: WebSocket) -> None:
    await websocket.accept()
    members[websocket] = None
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        members.pop(websocket, None)


async def count(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(members)))


async def trigger(request: Request) -> PlainTextResponse:
    msg = message(request.query_params.get("tag", "r0"))
    start = time.perf_counter()
    for _ in range(int(request.query_params.get("count", "1"))):
        for ws in list(members):
            await ws.send_text(msg)
    return PlainTextResponse(f"{len(members)} {time.perf_counter() - start:.6f}")


app = Starlette(routes=[WebSocketRoute("/ws", member), Route("/count", count), Route("/trigger", trigger)])
