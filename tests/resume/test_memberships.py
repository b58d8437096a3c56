"""A resumed session gets its rooms back whole: format, presence meta and presence watch
(PubSubApp's ``subscribe`` with ``presence: true``); and a session store that is briefly
unavailable is logged as a warning, aggregated, never as a traceback per handshake."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from asgi_ws import PubSubApp, ResumeMiddleware, Rooms
from asgi_ws.resume import MemorySessionStore
from tests.resume.wire import OPENED, Stream, opened, read_until
from tests.support.server import RunningServer, serve


@pytest.fixture(params=["memory://", "memory://?history=100"])
async def pubsub(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    rooms = Rooms(request.param)
    app = ResumeMiddleware(PubSubApp(rooms), secret_keys=["k"], rooms=rooms)
    async with serve(app) as server:
        yield server
    await rooms.close()


def controls(stream: Stream, op: str) -> list[dict[str, Any]]:
    return [c for c in stream.controls if c["$ws"] == op]


async def plain(server: RunningServer, stream: Stream) -> ClientConnection:
    """A client without resumption, reading into ``stream``."""
    ws = await connect(server.ws_url("/"))
    OPENED.append(ws)
    await ws.send(json.dumps({"$ws": "hello", "v": 1}))
    await read_until(ws, stream, lambda s: bool(controls(s, "welcome")))
    return ws


async def subscribe(ws: ClientConnection, stream: Stream, channel: str, **fields: Any) -> dict[str, Any]:
    before = len(controls(stream, "subscribed"))
    await ws.send(json.dumps({"$ws": "subscribe", "channel": channel, **fields}))
    await read_until(ws, stream, lambda s: len(controls(s, "subscribed")) > before)
    return controls(stream, "subscribed")[-1]


def diffs(stream: Stream, kind: str) -> list[dict[str, Any]]:
    return [c[kind] for c in controls(stream, "presence_diff") if kind in c]


async def test_a_resumed_member_keeps_its_presence_meta_and_its_presence_watch(pubsub: RunningServer) -> None:
    ann, bob, cat = Stream(), Stream(), Stream()
    ws = await opened(pubsub.ws_url("/"), ann)
    await subscribe(ws, ann, "room", presence=True, meta={"name": "ann"})
    watcher = await plain(pubsub, bob)
    await subscribe(watcher, bob, "room", presence=True)
    ws.transport.abort()  # ann's connection is cut: bob sees her leave
    await read_until(watcher, bob, lambda s: bool(diffs(s, "leave")))

    ws = await opened(pubsub.ws_url("/"), ann)
    assert ann.last("resumed")["rooms"] == ["room"]
    # Others see the resumed member as she joined, not as an anonymous one.
    await read_until(watcher, bob, lambda s: len(diffs(s, "join")) >= 1)
    assert diffs(bob, "join")[-1]["meta"] == {"name": "ann"}
    await watcher.send(json.dumps({"$ws": "presence", "channel": "room", "id": 1}))
    await read_until(watcher, bob, lambda s: bool(controls(s, "presence")))
    assert sorted(m["meta"].get("name", "") for m in controls(bob, "presence")[-1]["members"]) == ["", "ann"]

    # And she still watches the room's presence: a newcomer's join reaches her.
    newcomer = await plain(pubsub, cat)
    await subscribe(newcomer, cat, "room", meta={"name": "cat"})
    await read_until(ws, ann, lambda s: any(d["meta"] == {"name": "cat"} for d in diffs(s, "join")))


async def test_a_watch_started_on_a_room_already_joined_comes_back_too(pubsub: RunningServer) -> None:
    ann, cat = Stream(), Stream()
    ws = await opened(pubsub.ws_url("/"), ann)
    await subscribe(ws, ann, "room", meta={"name": "ann"})
    await subscribe(ws, ann, "room", presence=True)  # watching from the second subscribe on
    ws.transport.abort()
    ws = await opened(pubsub.ws_url("/"), ann)
    newcomer = await plain(pubsub, cat)
    await subscribe(newcomer, cat, "room")
    await read_until(ws, ann, lambda s: len(diffs(s, "join")) >= 1)


class Unavailable(MemorySessionStore):
    """A store that cannot create sessions (Redis down, its connection pool exhausted)."""

    async def create(self, *args: Any) -> None:
        raise ConnectionError("Too many connections")


async def test_an_unavailable_store_is_a_warning_aggregated_not_a_traceback_per_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="asgi_ws")
    app = ResumeMiddleware(PubSubApp(), secret_keys=["k"], store=Unavailable())
    async with serve(app) as server:
        for _ in range(5):
            stream = Stream()
            async with connect(f"{server.ws_url('/')}?ws_resume=new") as ws:
                await read_until(ws, stream, lambda s: bool(controls(s, "resume_failed")))
                assert stream.last("resume_failed")["code"] == "store_unavailable"
    lines = [r for r in caplog.records if r.name == "asgi_ws.resume" and "resumable session" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # the others are counted for the next summary
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "ConnectionError: Too many connections" in lines[0].getMessage()
