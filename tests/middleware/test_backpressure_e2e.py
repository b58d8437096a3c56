"""A slow reader among many, against real uvicorn processes under each WebSocket implementation.

What a reader that stops reading does to a bare serial broadcast loop, measured here before
writing the middleware (compression off, loopback): the kernel absorbs about 3-4 MB, uvicorn's
transport buffers 64-80 KiB more, then ``send`` blocks until the reader reads again. Under all
three implementations: a stall, with a bounded buffer. These tests show the stall, show it
gone behind BackpressureMiddleware, and compare memory with broadcaster's unbounded queues.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.broadcast_app import MAX_BYTES, MAX_MESSAGES
from tests.support.procs import ServerProcess, uvicorn_process

pytestmark = pytest.mark.e2e

READERS = 1000


@dataclass
class Reader:
    conn: ClientConnection
    expected: int
    received: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async for message in self.conn:
            if isinstance(message, str):
                self.received.append(message.split(":", 1)[0])
                if len(self.received) >= self.expected:
                    self.done.set()


async def open_member(server: ServerProcess, name: str, *, slow: bool = False) -> ClientConnection:
    sock = None
    if slow:
        # A small receive buffer makes the kernel absorb less before the server must stop.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await connect(
        server.ws_url(f"/member?name={name}"),
        compression=None,  # permessage-deflate would shrink the test's volume to nothing
        max_size=None,
        max_queue=None if not slow else 1,
        open_timeout=60,
        ping_interval=None,
        sock=sock,
    )


@asynccontextmanager
async def scenario(app: str, ws: str, readers: int, count: int, *, fill: bool = True) -> AsyncIterator[dict[str, Any]]:
    """Start the server, ``readers`` reading members, one member that stopped reading, and a control client."""
    with uvicorn_process(f"tests.support.broadcast_app:{app}", ws=ws, extra=["--ws-max-size", "1048576000"]) as server:
        members: list[Reader] = []
        for start in range(0, readers, 100):
            conns = await asyncio.gather(
                *(open_member(server, f"r{i}") for i in range(start, min(readers, start + 100)))
            )
            members += [Reader(c, count) for c in conns]
        slow = await open_member(server, "slow", slow=True)
        assert slow.transport is not None
        slow.transport.pause_reading()  # the slow client stops reading
        tasks = [asyncio.create_task(r.run()) for r in members]
        ctl = await connect(server.ws_url("/ctl"), compression=None, open_timeout=30, ping_interval=None)

        async def command(**kwargs: Any) -> dict[str, Any]:
            await ctl.send(json.dumps(kwargs))
            return json.loads(await asyncio.wait_for(ctl.recv(), 60))  # type: ignore[no-any-return]

        if fill:  # make the slow member's pipe full before the broadcast starts
            assert (await command(cmd="fill", name="slow"))["filled"] > 0
        try:
            yield {"server": server, "readers": members, "slow": slow, "ctl": ctl, "command": command}
        finally:
            for task in tasks:
                task.cancel()
            for conn in [*(r.conn for r in members), slow, ctl]:
                conn.transport.abort()  # type: ignore[union-attr]


async def test_a_slow_reader_stalls_a_bare_broadcast_loop(ws_impl: str) -> None:
    count = 20
    async with scenario("bare", ws_impl, readers=50, count=count) as s:
        before = await s["command"](cmd="stats")
        await s["ctl"].send(json.dumps({"cmd": "broadcast", "count": count, "size": 512}))
        # The loop reaches the slow member and stays there: every reader got the first
        # message (the slow member is last in line) and nothing more.
        for _ in range(100):
            stats = await s["command"](cmd="stats")
            if stats["blocked_on"] == "slow":
                break
            await asyncio.sleep(0.05)
        assert stats["blocked_on"] == "slow"
        await asyncio.sleep(1.0)
        stats = await s["command"](cmd="stats")
        assert stats["blocked_on"] == "slow"  # still stuck
        assert max(len(r.received) for r in s["readers"]) <= 1
        assert stats["rss"] - before["rss"] < 8 * 1024 * 1024  # a stall, not a growing buffer


@pytest.mark.parametrize("policy", ["drop_oldest", "close"])
async def test_behind_the_middleware_the_others_get_everything(ws_impl: str, policy: str) -> None:
    count = 100
    async with scenario(policy, ws_impl, readers=READERS, count=count) as s:
        before = await s["command"](cmd="stats")
        await s["ctl"].send(json.dumps({"cmd": "broadcast", "count": count, "size": 512}))
        done = json.loads(await asyncio.wait_for(s["ctl"].recv(), 120))
        assert "done" in done
        await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in s["readers"])), 120)
        for reader in s["readers"]:
            assert reader.received == [str(i) for i in range(count)]  # everything, in order
        stats = await s["command"](cmd="stats")
        slow = stats["members"]["slow"]
        assert stats["rss"] - before["rss"] < 16 * 1024 * 1024
        if policy == "drop_oldest":
            assert slow["disconnect"] is None
            outbound = slow["outbound"]
            assert outbound["dropped"] > 0
            assert outbound["queued"] <= MAX_MESSAGES and outbound["queued_bytes"] <= MAX_BYTES
            # Once it reads again, the slow client gets the newest messages, in order.
            s["slow"].transport.resume_reading()
            seen: list[int] = []
            while not seen or seen[-1] != count - 1:
                message = await asyncio.wait_for(s["slow"].recv(), 30)
                if isinstance(message, str):
                    seen.append(int(message.split(":", 1)[0]))
            assert seen == sorted(seen) and len(seen) <= MAX_MESSAGES + 1
        else:
            assert slow["disconnect"] == 1013  # the app was told at once, while the client still does not read
            s["slow"].transport.resume_reading()
            with pytest.raises(ConnectionClosed):
                while True:  # read the backlog; the close frame follows it
                    await asyncio.wait_for(s["slow"].recv(), 30)
            assert (s["slow"].close_code, s["slow"].close_reason) == (1013, "slow consumer")


@pytest.mark.parametrize(("app", "bounded"), [("unbounded", False), ("drop_oldest", True)])
async def test_memory_stays_bounded_where_unbounded_queues_grow(ws_impl: str, app: str, bounded: bool) -> None:
    count, size = 2000, 8192  # 16 MB to every member
    # The unbounded design's send never blocks, so its pipe fills during the broadcast itself.
    # (At this volume the readers, sharing the machine with the server, fall behind too and
    # get the policy as well: this test is about memory, the one above about delivery.)
    async with scenario(app, ws_impl, readers=8, count=count, fill=bounded) as s:
        before = await s["command"](cmd="stats")
        await s["ctl"].send(json.dumps({"cmd": "broadcast", "count": count, "size": size}))
        assert "done" in json.loads(await asyncio.wait_for(s["ctl"].recv(), 120))
        after = await s["command"](cmd="stats")
        growth = after["rss"] - before["rss"]
    if bounded:
        assert growth < 4 * 1024 * 1024, growth
        assert after["members"]["slow"]["outbound"]["queued_bytes"] <= MAX_BYTES
    else:
        assert growth > 8 * 1024 * 1024, growth  # the slow member's queue holds the whole broadcast
