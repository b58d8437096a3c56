"""A broadcast server for slow-consumer tests, run in its own process (see tests.support.procs).

Members connect to ``/member?name=...`` and only read. A control client on ``/ctl`` sends
JSON commands:

- ``{"cmd": "fill", "name": n}``: write 64 KiB chunks to member ``n`` until a write blocks
  (its reader stopped and the kernel buffers are full); answers ``{"filled": bytes}``.
- ``{"cmd": "broadcast", "count": c, "size": s}``: send ``c`` messages of ``s`` characters to
  every member, in a serial loop, in the background; ``{"done": seconds}`` follows when done.
- ``{"cmd": "stats"}``: answers the server's RSS, which member the loop is blocked on, and per
  member its disconnect code and outbound counters.

Four variants of the same endpoint, as uvicorn import strings:
``bare`` (the serial loop over plain sends), ``unbounded`` (a queue and writer task per member,
broadcaster's design), ``drop_oldest`` and ``close`` (behind BackpressureMiddleware).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from asgi_ws import BackpressureMiddleware, connection_of
from asgi_ws.types import Message, Receive, Scope, Send

MAX_MESSAGES = 64
MAX_BYTES = 256 * 1024


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, *, unbounded: bool = False) -> None:
        self.members: dict[str, Send] = {}
        self.scopes: dict[str, Scope] = {}
        self.disconnects: dict[str, int] = {}
        self.blocked_on: str | None = None
        self.unbounded = unbounded
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/ctl":
            await self.control(receive, send)
            return
        name = parse_qs(scope["query_string"].decode())["name"][0]
        self.members[name] = self._queued(send) if self.unbounded else send
        self.scopes[name] = scope
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects[name] = message.get("code", 0)
                self.members.pop(name, None)
                return

    def _queued(self, send: Send) -> Send:
        """broadcaster's design: an unbounded asyncio.Queue and a writer task per member."""
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def writer() -> None:
            while True:
                await send(await queue.get())

        task = asyncio.get_running_loop().create_task(writer())
        self.tasks.add(task)

        async def enqueue(message: Message) -> None:
            queue.put_nowait(message)

        return enqueue

    async def control(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            command = json.loads(message["text"])
            if command["cmd"] == "fill":
                filled = await self.fill(command["name"])
                await send({"type": "websocket.send", "text": json.dumps({"filled": filled})})
            elif command["cmd"] == "broadcast":
                task = asyncio.get_running_loop().create_task(self.broadcast(command["count"], command["size"], send))
                self.tasks.add(task)
            elif command["cmd"] == "stats":
                await send({"type": "websocket.send", "text": json.dumps(self.stats())})

    async def fill(self, name: str) -> int:
        send, scope = self.members[name], self.scopes[name]
        conn = connection_of(scope)
        chunk = {"type": "websocket.send", "bytes": b"\0" * 65536}
        filled = 0
        while filled < 512 * 1024 * 1024:
            if conn is not None:  # behind the middleware: send never blocks; stop once backlogged
                await send(chunk)
                filled += 65536
                await asyncio.sleep(0)
                if conn.outbound.backlogged:
                    return filled
            else:
                try:
                    await asyncio.wait_for(send(chunk), 0.5)
                except asyncio.TimeoutError:
                    return filled
                filled += 65536
        raise AssertionError("the member never stopped reading")

    async def broadcast(self, count: int, size: int, ctl: Send) -> None:
        start = time.perf_counter()
        for i in range(count):
            text = f"{i}:".ljust(size, "x")
            for name, send in list(self.members.items()):
                self.blocked_on = name
                with contextlib.suppress(OSError):  # the member is gone; a real app would drop it
                    await send({"type": "websocket.send", "text": text})
                self.blocked_on = None
        await ctl({"type": "websocket.send", "text": json.dumps({"done": time.perf_counter() - start})})

    def stats(self) -> dict[str, Any]:
        members = {}
        for name, scope in self.scopes.items():
            conn = connection_of(scope)
            members[name] = {
                "disconnect": self.disconnects.get(name),
                "outbound": conn.outbound.stats() if conn is not None else None,
            }
        return {"rss": rss(), "blocked_on": self.blocked_on, "members": members}


bare = Server()
unbounded = Server(unbounded=True)
drop_oldest = BackpressureMiddleware(Server(), max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES, policy="drop_oldest")
close = BackpressureMiddleware(Server(), max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES, policy="close")
