"""One session's trouble stays its own, and an abandoned session's memory is given back on time."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from asgi_ws import ResumeMiddleware, Rooms
from asgi_ws.resume import MemorySessionStore
from asgi_ws.resume.stores.base import Write
from asgi_ws.types import Receive, Scope, Send
from tests.resume import resume_app
from tests.resume.wire import Stream, opened, read_until
from tests.support.server import serve


def got(n: int) -> Any:
    return lambda s: len(s.data) >= n


async def blobs(scope: Scope, receive: Receive, send: Send) -> None:
    """``blob N``: N text frames of 100 kB; ``bad``: a text no socket can send (a lone surrogate),
    and what ``send`` said about it."""
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        command, *args = message["text"].split()
        if command == "blob":
            for _ in range(int(args[0])):
                await send({"type": "websocket.send", "text": "x" * 100_000})
        elif command == "bad":
            try:
                await send({"type": "websocket.send", "text": "half a pair: \ud800"})
            except UnicodeEncodeError as exc:
                await send({"type": "websocket.send", "text": f"refused: {type(exc).__name__}"})
            else:
                await send({"type": "websocket.send", "text": "accepted"})


async def test_an_abandoned_sessions_memory_is_freed_when_its_window_ends() -> None:
    store = MemorySessionStore()
    app = ResumeMiddleware(blobs, secret_keys=["k"], store=store, window=0.5)
    async with serve(app) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("blob 20")  # 2 MB kept for a resume
        await read_until(ws, stream, got(20))
        frames = weakref.ref(store._records[stream.session_id].entries)  # type: ignore[index]
        ws.transport.abort()  # and never comes back; no other session is ever created
        async with asyncio.timeout(10):  # a guard: the window is half a second
            while len(store):
                await asyncio.sleep(0.05)
        gc.collect()
        assert frames() is None, "the frames are freed with the session"
        assert app.stats["created"] == 1


async def test_an_unencodable_text_fails_at_the_apps_send_and_numbers_nothing(caplog: pytest.LogCaptureFixture) -> None:
    app = ResumeMiddleware(blobs, secret_keys=["k"])
    async with serve(app) as server:
        stream, other = Stream(), Stream()
        ws, bystander = [await opened(server.ws_url("/"), s) for s in (stream, other)]
        for socket, command, received in ((ws, "bad", stream), (bystander, "blob 1", other)):
            await socket.send(command)
            await read_until(socket, received, got(1))
        assert stream.data == ["refused: UnicodeEncodeError"] and len(other.data[0]) == 100_000
        ws.transport.abort()  # the count is right: the refused text took no seq
        ws = await opened(server.ws_url("/"), stream)
        assert stream.last("resumed")["seq"] == 1 and stream.last("resumed")["replay"] == 0
        await ws.send("blob 1")
        await read_until(ws, stream, got(2))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "nothing reached the shared flusher"


class OneFailingSession(MemorySessionStore):
    """A store whose writes for one session fail (a corrupt key, a script error)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: str | None = None

    def _write(self, write: Write) -> bool | None:
        if write.session_id == self.failing:
            raise OSError("this session's record is broken")
        return super()._write(write)


async def test_a_store_error_of_one_session_is_its_own() -> None:
    store = OneFailingSession()
    app = ResumeMiddleware(resume_app.numbers_app(Rooms()), secret_keys=["k"], store=store)
    async with serve(app) as server:
        streams = [Stream(), Stream(), Stream()]
        broken, healthy, publisher = [await opened(server.ws_url("/"), s) for s in streams]
        for ws, stream in ((broken, streams[0]), (healthy, streams[1])):
            await ws.send("join feed")
            await read_until(ws, stream, got(1))
        store.failing = streams[0].session_id
        await publisher.send("publish feed one")  # both sessions are stored in the same round
        with pytest.raises(ConnectionClosed) as closed:
            await read_until(broken, streams[0], got(2), timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await read_until(healthy, streams[1], got(2))
        await publisher.send("publish feed two")
        await read_until(healthy, streams[1], got(3))
        assert streams[1].data == ["joined feed", "one", "two"]
