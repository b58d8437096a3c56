"""python-socketio: clients join room ``bench`` on connect; trigger = ``sio.emit("m", msg, room="bench")``.

Members are Engine.IO v4 clients over WebSocket (``/socket.io/?EIO=4&transport=websocket``);
the broadcast reaches each as a ``42["m","#r0001#xxx..."]`` text frame.
"""

from __future__ import annotations

import time
from typing import Any

import socketio

from asgi_ws.types import Receive, Scope, Send

from ._common import GROUP, drain_request, message, respond, tag_of

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
members = 0


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    global members
    await sio.enter_room(sid, GROUP)
    members += 1


@sio.event
async def disconnect(sid: str, *args: Any) -> None:
    global members
    members -= 1


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await drain_request(receive)
    if scope["path"] == "/trigger":
        start = time.perf_counter()
        await sio.emit("m", message(tag_of(scope)), room=GROUP)
        await respond(send, f"{members} {time.perf_counter() - start:.6f}")
    else:
        await respond(send, str(members))


app = socketio.ASGIApp(sio, other_asgi_app=http)
