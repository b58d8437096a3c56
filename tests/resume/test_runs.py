"""Room runs across a cut: rooms whose messages interleave (a run each time the room changes),
a publisher's own messages skipped (``exclude``), a room left while its run was open, and the
application's frames in between; every data frame once, in order, after the resume."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from asgi_ws import ResumeMiddleware, Rooms
from asgi_ws.brokers import MemoryBroker
from asgi_ws.resume import MemorySessionStore, SessionStore
from tests.resume import resume_app
from tests.resume.wire import Stream, opened, read_until
from tests.support.server import serve


def got(n: int) -> Any:
    return lambda s: len(s.data) >= n


@dataclass
class Two:
    """A member and a publisher, resumable clients of one server (tests/resume/resume_app.py)."""

    base: str
    ws: ClientConnection
    member: Stream
    publisher: ClientConnection
    other: Stream


@contextlib.asynccontextmanager
async def two_clients(store: str | SessionStore = "memory://") -> AsyncIterator[Two]:
    app = resume_app.make_app(store, broker="memory://?history=1000")
    try:
        async with serve(app) as server:
            base = server.ws_url("/")
            member, other = Stream(), Stream()
            yield Two(base, await opened(base, member), member, await opened(base, other), other)
    finally:
        await app.close()


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
async def test_interleaved_rooms_and_frames_resume_exactly(store_kind: str, request: pytest.FixtureRequest) -> None:
    redis = request.getfixturevalue("redis_url") if store_kind == "redis" else None
    store: str | SessionStore = f"{redis}?prefix=asgi_ws_runs_{uuid.uuid4().hex[:8]}:" if redis else "memory://"
    if store == "memory://":
        store = MemorySessionStore()
    async with two_clients(store) as two:
        base, ws, member, publisher = two.base, two.ws, two.member, two.publisher
        for room in ("a", "b"):
            await ws.send(f"join {room}")
        await read_until(ws, member, got(2))
        expected = ["joined a", "joined b"]
        for i in range(20):  # a, b, a, b...: a run each time the room changes
            room = "ab"[i % 2]
            await publisher.send(f"publish {room} {room}{i}")
            expected.append(f"{room}{i}")
        await read_until(ws, member, got(len(expected)))
        await ws.send("emit 1 4")  # frames of the session's own between runs
        expected += ["1", "2", "3"]
        await read_until(ws, member, got(len(expected)))
        for i in range(20, 30):  # then one room only: one run, no store write per message
            await publisher.send(f"publish a a{i}")
            expected.append(f"a{i}")
        await read_until(ws, member, got(len(expected)))
        assert member.data == expected
        if isinstance(store, MemorySessionStore):
            record = store._records[member.session_id]  # type: ignore[index]
            runs = [e for e in record.entries if not isinstance(e[1], list)]
            assert 20 <= len(runs) <= 22  # the switches, not the 30 messages

        # Cut at every point of the stream: the resume gives exactly the rest.
        for cut in (5, 13, 22, 25, len(expected) - 1):
            ws.transport.abort()
            member.data = member.data[:cut]  # what this client really got before the cut
            ws = await opened(base, member)
            assert member.last("resumed")["replay"] == len(expected) - cut
            await read_until(ws, member, got(len(expected)))
            assert member.data == expected
        await publisher.send("publish a live")
        await read_until(ws, member, got(len(expected) + 1))
        assert member.data[-1] == "live"


async def test_a_room_left_with_its_run_open_stays_left_after_a_resume() -> None:
    async with two_clients() as two:
        base, ws, member, publisher, other = two.base, two.ws, two.member, two.publisher, two.other
        await ws.send("join a")
        await read_until(ws, member, got(1))
        await publisher.send("count a 5")
        await read_until(ws, member, got(6))
        await ws.send("leave a")  # the open run ends here
        await ws.send("emit 1 2")  # a frame after the leave, seen once the leave is recorded
        await read_until(ws, member, got(7))
        await publisher.send("count a 5")  # not the session's any more
        await publisher.send("join a")
        await read_until(publisher, other, got(1))  # joined after the 5: they are in the history
        ws.transport.abort()
        member.data = member.data[:3]
        ws = await opened(base, member)
        resumed = member.last("resumed")
        assert resumed["rooms"] == [] and resumed["replay"] == 4
        await read_until(ws, member, got(7))
        assert member.data == ["joined a", "0", "1", "2", "3", "4", "1"]
        await ws.send("emit 2 3")
        await read_until(ws, member, got(8))
        assert member.data[-1] == "2"  # nothing of room a came in between


async def test_a_publishers_own_excluded_messages_restart_its_run() -> None:
    """exclude= skips the publisher's own message: its next message of the room cannot continue
    the run (a hole), so a new run starts, and the resume stays exact."""
    async with two_clients() as two:
        base, ws, member, publisher, other = two.base, two.ws, two.member, two.publisher, two.other
        for client, stream in ((ws, member), (publisher, other)):
            await client.send("join r")
            await read_until(client, stream, got(1))
        await publisher.send("count r 3")
        await ws.send("shout r mine")  # published with exclude=itself (resume_app's shout)
        await publisher.send("publish r after")
        await read_until(ws, member, got(5))
        assert member.data == ["joined r", "0", "1", "2", "after"]
        ws.transport.abort()
        member.data = member.data[:2]
        ws = await opened(base, member)
        await read_until(ws, member, got(5))
        assert member.data == ["joined r", "0", "1", "2", "after"]  # "mine" is not replayed either


class HeldDeliveries(MemoryBroker):
    """The memory broker with history, whose deliveries a test can hold back and release: what
    a Redis subscriber connection does when its pub/sub messages trail the history read made
    on another connection."""

    def __init__(self) -> None:
        super().__init__("memory://?history=1000")
        self.held: list[tuple[Any, ...]] | None = None

    async def connect(self, deliver: Any, on_event: Any = None) -> None:
        def maybe_hold(*args: Any) -> None:
            if self.held is not None:
                self.held.append(args)
            else:
                deliver(*args)

        await super().connect(maybe_hold, on_event)
        self._release_to = deliver

    def release(self) -> None:
        held, self.held = self.held or [], None
        for args in held:
            self._release_to(*args)


async def test_a_live_delivery_trailing_the_resumes_history_read_is_not_numbered_twice() -> None:
    """A resume fills a room's gap from the history; the same messages' live deliveries, still
    on their way, must not be numbered again once the live hold is released."""
    broker = HeldDeliveries()
    # recent=0: the resume reads the broker's history (the newest messages Rooms keeps in
    # memory come from the deliveries themselves, so they could not run ahead of them).
    rooms = Rooms(broker, namespace="resume", recent=0)
    app = ResumeMiddleware(resume_app.numbers_app(rooms), secret_keys=resume_app.KEYS, rooms=rooms)
    try:
        async with serve(app) as server:
            base = server.ws_url("/")
            member, other = Stream(), Stream()
            ws, publisher = await opened(base, member), await opened(base, other)
            for client, stream in ((ws, member), (publisher, other)):
                await client.send("join r")
                await read_until(client, stream, got(1))
            await publisher.send("publish r first")
            await read_until(ws, member, got(2))
            ws.transport.abort()
            broker.held = []  # from now on the room's live deliveries trail its history
            before = await broker.last_position("resume:r")
            await publisher.send("count r 3")
            async with asyncio.timeout(10):  # the three are in the history (their deliveries are held)
                while len((await broker.history("resume:r", before)) or []) < 3:
                    await asyncio.sleep(0.01)
            ws = await opened(base, member)  # resumed: the three come from the history
            await read_until(ws, member, got(5))
            broker.release()  # their live deliveries arrive now, after the resume
            await publisher.send("publish r last")
            await read_until(ws, member, got(6))
            assert member.data == ["joined r", "first", "0", "1", "2", "last"]
    finally:
        await app.close()
