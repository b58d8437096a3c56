"""A bare protocol-level resuming client for the server tests (the product client is asgi_ws.client)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect

PREFIX = '{"$ws"'


@dataclass
class Stream:
    """What one client received over a session's connections: data frames and control messages."""

    data: list[str] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    session_id: str | None = None

    def url(self, base: str) -> str:
        join = "&" if "?" in base else "?"
        if self.token is None:
            return f"{base}{join}ws_resume=new"
        return f"{base}{join}ws_resume={quote(self.token)}&ws_seq={len(self.data)}"

    def take(self, frame: str | bytes) -> None:
        if isinstance(frame, str) and frame.startswith(PREFIX):
            control = json.loads(frame)
            self.controls.append(control)
            if control["$ws"] in ("session", "resumed"):
                self.token, self.session_id = control["token"], control["id"]
        else:
            self.data.append(frame if isinstance(frame, str) else "b:" + frame.decode())

    def last(self, op: str) -> dict[str, Any]:
        return [c for c in self.controls if c["$ws"] == op][-1]


async def read_until(ws: ClientConnection, stream: Stream, done: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not done(stream):
            stream.take(await ws.recv())


#: Every connection the tests opened, closed by the autouse fixture in conftest.py.
OPENED: list[ClientConnection] = []


async def opened(base: str, stream: Stream, **kwargs: Any) -> ClientConnection:
    ws = await connect(stream.url(base), **kwargs)
    OPENED.append(ws)
    before = len(stream.controls)
    await read_until(ws, stream, lambda s: any(c["$ws"] in ("session", "resumed") for c in s.controls[before:]))
    return ws


async def members(base: str, count: int, room: str) -> tuple[list[ClientConnection], list[Stream]]:
    """``count`` resumable clients of ``base`` that joined ``room`` (tests/resume/resume_app.py)."""
    streams = [Stream() for _ in range(count)]
    sockets = await asyncio.gather(*(opened(base, s) for s in streams))
    for ws in sockets:
        await ws.send(f"join {room}")
    await asyncio.gather(
        *(read_until(ws, s, lambda s: len(s.data) >= 1) for ws, s in zip(sockets, streams, strict=True))
    )
    return list(sockets), streams


def expected(start: int, stop: int) -> list[str]:
    return [f"b:{i}" if i % 7 == 0 else str(i) for i in range(start, stop)]


async def refused(url: str, **kwargs: Any) -> tuple[ClientConnection, Stream, dict[str, Any]]:
    """Resume at ``url`` expecting a refusal: the connection (in its fresh session), what it
    received, and the ``resume_failed`` message."""
    ws = await connect(url, **kwargs)
    OPENED.append(ws)
    fresh = Stream()
    await read_until(ws, fresh, lambda s: any(c["$ws"] == "session" for c in s.controls))
    return ws, fresh, fresh.last("resume_failed")
