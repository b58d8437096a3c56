"""drain() in process, under real uvicorn: flush, close with 1001, clean-up, 503 for newcomers.

Each test runs its server in the test's own event loop; a drain marks that loop as draining
for good (the process is shutting down), and every test has a loop of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import BackpressureMiddleware, ResumeMiddleware, Rooms, connection_of
from asgi_ws.drain import drain, draining
from asgi_ws.resume import MemorySessionStore
from asgi_ws.server import Server
from asgi_ws.types import Message, Receive, Scope, Send
from tests.client.conftest import until
from tests.shutdown.conftest import SlowReader, within
from tests.support.clients import opened, refusal
from tests.support.server import serve

ACCEPT: Message = {"type": "websocket.accept"}


async def closed_code(ws: Any) -> tuple[int | None, str | None]:
    """Read ``ws`` until it closes (bounded); return the close code and reason it got."""

    async def read_to_the_end() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()

    await within(read_to_the_end(), 10, "the server closing the connection")
    return ws.close_code, ws.close_reason


async def test_a_handshake_during_the_drain_is_refused_with_503(ws_impl: str) -> None:
    release = asyncio.Event()

    async def slow_to_clean_up(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        while (await receive())["type"] != "websocket.disconnect":
            pass
        await release.wait()  # the drain lasts until this connection's clean-up is done

    async with serve(BackpressureMiddleware(slow_to_clean_up), ws=ws_impl) as server:
        async with opened(server.ws_url("/")) as held:
            draining_task = asyncio.create_task(drain(timeout=10))
            assert await closed_code(held) == (1001, "going away")
            newcomer = await refusal(server.ws_url("/"))
            assert (newcomer.status, newcomer.body) == (503, "server shutting down")
            assert not draining_task.done()
            release.set()
            report = await within(draining_task, 10, "the drain ending once the clean-up is done")
    assert (report.connections, report.closed, report.remaining) == (1, 1, 0)


async def test_the_backlog_is_flushed_then_1001_and_the_app_cleans_up(ws_impl: str) -> None:
    count, size = 512, 32 * 1024  # 16 MiB: more than the sockets buffer, so a backlog waits
    seen: dict[str, Any] = {}
    sent_all, cleaned_up = asyncio.Event(), asyncio.Event()

    async def flood(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        try:
            for i in range(count):
                await send({"type": "websocket.send", "text": f"{i:06d}".ljust(size, ".")})
            conn = connection_of(scope)
            seen["backlogged"] = conn is not None and conn.outbound.backlogged
            sent_all.set()
            seen["disconnect"] = await receive()
        finally:
            cleaned_up.set()

    app = BackpressureMiddleware(flood, max_messages=count, max_bytes=None, policy="block")
    async with serve(app, ws=ws_impl) as server:
        client = SlowReader(server.port)
        await client.open()  # and reads nothing more for now
        await within(sent_all.wait(), 10, "the app queueing every message")
        assert seen["backlogged"], "the test needs messages queued behind a blocked write"
        draining_task = asyncio.create_task(drain(timeout=10))
        texts, close = await client.read_all()
        assert close is not None and (close.code, close.reason) == (1001, "going away")
        assert [text[:6] for text in texts] == [f"{i:06d}" for i in range(count)]  # all of them, before the close
        report = await within(draining_task, 10, "the drain ending")
        await within(cleaned_up.wait(), 10, "the app's clean-up")
    assert seen["disconnect"] == {"type": "websocket.disconnect", "code": 1001, "reason": "going away"}
    assert (report.connections, report.closed, report.remaining) == (1, 1, 0)


async def test_a_handshake_under_way_when_the_drain_starts_is_accepted_then_closed_with_1001() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow_handshake(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        entered.set()
        await gate.wait()  # e.g. a database lookup before accepting
        await send(ACCEPT)
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with serve(BackpressureMiddleware(slow_handshake)) as server:
        opening = asyncio.ensure_future(connect(server.ws_url("/")))
        await within(entered.wait(), 10, "the handshake reaching the app")
        draining_task = asyncio.create_task(drain(timeout=10))
        await until(draining)
        gate.set()
        async with await within(opening, 10, "the accept") as ws:
            assert await closed_code(ws) == (1001, "going away")
        report = await within(draining_task, 10, "the drain ending")
    assert (report.connections, report.closed, report.remaining) == (1, 1, 0)


async def test_a_drained_resumable_session_stays_in_the_store() -> None:
    store = MemorySessionStore()

    async def numbers(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        for i in range(5):
            await send({"type": "websocket.send", "text": str(i)})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    app = ResumeMiddleware(numbers, secret_keys=[secrets.token_urlsafe(16)], store=store)
    async with serve(app) as server:
        async with opened(server.ws_url("/?ws_resume=new")) as ws:
            frames = [await ws.recv() for _ in range(6)]  # the session message and 5 frames
            assert len(store) == 1
            report = await drain(timeout=10)
            assert await closed_code(ws) == (1001, "going away")
    assert frames[1:] == ["0", "1", "2", "3", "4"]
    assert report.closed == 1 and report.remaining == 0
    assert len(store) == 1  # not the client's goodbye (1000): it may resume elsewhere


@contextlib.asynccontextmanager
async def uvicorn_server(server_class: Any, app: Any, ws: str) -> AsyncIterator[tuple[Any, int]]:
    """A uvicorn server of ``server_class`` in the test's loop, stopped as SIGTERM would."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws=ws, lifespan="off", log_level="warning")
    server = server_class(config)
    config.setup_event_loop = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done())
    try:
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True  # what uvicorn's signal handler does
        await within(task, 20, "the server stopping")


@pytest.mark.parametrize(("server_class", "code"), [(Server, 1001), (uvicorn.Server, 1012)])
async def test_asgi_ws_server_drains_before_uvicorns_1012(ws_impl: str, server_class: Any, code: int) -> None:
    """asgi_ws.server.Server closes with 1001 after the flush; plain uvicorn sends 1012 first."""
    accepted = asyncio.Event()
    disconnects: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        accepted.set()
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        disconnects.append(message)

    async with uvicorn_server(server_class, BackpressureMiddleware(app), ws_impl) as (server, port):
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await within(accepted.wait(), 10, "the accept")
            server.should_exit = True
            assert (await closed_code(ws))[0] == code
    assert len(disconnects) == 1  # the app's clean-up ran either way
    if server_class is Server:
        assert disconnects[0]["code"] == 1001
        assert server.drained is not None and server.drained.closed == 1


async def test_rooms_close_ends_a_task_that_swallowed_its_cancellation() -> None:
    """On Python 3.11, redis-py's ``asyncio.wait_for`` around a socket write swallows a
    cancellation arriving as the write completes: Rooms' presence sender, cancelled by
    ``close()`` while publishing the leaves of a drain, went on waiting, and the lifespan
    shutdown (and the process) never ended."""
    rooms = Rooms("memory://")
    await rooms.start()
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # what wait_for does when the awaited write completes meanwhile
        await asyncio.sleep(3600)

    rooms._spawn(stubborn())
    await asyncio.sleep(0)
    await within(rooms.close(), 5, "Rooms.close() ending")
    assert swallowed.is_set()
