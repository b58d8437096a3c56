"""A reconnect storm on one room through a tiny broker pool: 500 members of one room, each
having read a different number of its messages, lose their server and resume at once on a
fresh one whose Redis broker pool holds 2 connections. Every resume succeeds with exactly
the messages it missed, and the room's history is read far fewer times than 500
(asgi_ws/rooms/replay.py coalesces the reads of one room)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from asgi_ws import ResumeMiddleware, Rooms
from tests.resume.resume_app import KEYS, numbers_app
from tests.resume.wire import Stream, members, opened, read_until
from tests.support.server import RunningServer, serve

CLIENTS = 500
MESSAGES = 60


@asynccontextmanager
async def server(broker: str, store: str, namespace: str, recent: int) -> AsyncIterator[tuple[RunningServer, Rooms]]:
    rooms = Rooms(broker, namespace=namespace, recent=recent)
    app = ResumeMiddleware(numbers_app(rooms), secret_keys=KEYS, store=store, rooms=rooms, window=120)
    try:
        async with serve(app, backlog=CLIENTS * 2) as running:
            yield running, rooms
            async with asyncio.timeout(60):
                while app.live:  # every socket is gone: their sessions' last writes are done
                    await asyncio.sleep(0.05)
    finally:
        await rooms.close()
        await app.close()


@pytest.mark.parametrize("recent", [1024, 0], ids=["recent", "no_recent"])
async def test_500_members_of_one_room_resume_at_once_through_a_broker_pool_of_two(redis_url: str, recent: int) -> None:
    """With ``recent`` (the default) the first read seeds the process's memory of the room and
    the later resumes are answered from it; without, the concurrent reads are coalesced."""
    tag = uuid.uuid4().hex[:8]
    broker = f"{redis_url}?history=1000&max_connections=2&timeout=2"
    store = f"{redis_url}?prefix=asgi_ws_test_{tag}:"
    namespace = f"hstorm{tag}"
    async with server(broker, store, namespace, recent) as (first, _):
        sockets, streams = await members(first.ws_url("/"), CLIENTS, "feed")
        await sockets[0].send(f"count feed {MESSAGES}")
        # Client i reads 1 + i % MESSAGES of the room's messages, then its socket drops: every
        # resume asks for the room's messages after its own position.
        await asyncio.gather(
            *(
                read_until(ws, s, lambda s, n=2 + i % MESSAGES: len(s.data) >= n, 30)
                for i, (ws, s) in enumerate(zip(sockets, streams, strict=True))
            )
        )
        for ws in sockets:
            ws.transport.abort()
    async with server(broker, store, namespace, recent) as (second, rooms):
        resumed: list[Stream] = list(streams)
        sockets = await asyncio.gather(*(opened(second.ws_url("/"), s, open_timeout=60) for s in resumed))
        await asyncio.gather(
            *(
                read_until(ws, s, lambda s: len(s.data) >= 1 + MESSAGES, 60)
                for ws, s in zip(sockets, resumed, strict=True)
            )
        )
        expected = ["joined feed", *map(str, range(MESSAGES))]
        for stream in resumed:
            assert [c["$ws"] for c in stream.controls if c["$ws"] != "session"] == ["resumed"], stream.controls
            assert stream.data == expected
            assert stream.last("resumed")["room_gap"] is False
        # Uncoalesced, every resume was one read (500); coalesced, each read serves every
        # resume that asked while the previous one was in flight; seeded, memory serves the rest.
        assert rooms.stats.history_reads <= (10 if recent else CLIENTS // 2), rooms.stats
        await asyncio.gather(*(ws.close() for ws in sockets))
        print(f"{rooms.stats.history_requests} history requests, {rooms.stats.history_reads} broker reads")
