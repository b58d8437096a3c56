"""Resumable members of rooms on history brokers: a member whose client stopped reading (its
queue full: block, then 1013, then an exact resume), and members whose worker is SIGKILLed
resuming on another worker, on every broker that keeps history across processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import QueueLimits
from tests.brokers.test_nats import delete_streams
from tests.brokers.test_postgres import drop_tables
from tests.resume import resume_app
from tests.resume.wire import OPENED, Stream, members, opened, read_until
from tests.support.procs import uvicorn_process
from tests.support.server import serve

SIZE = 10_000  # bytes per room message: 800 of them are more than any socket buffers hold


def got(n: int) -> Any:
    return lambda s: len(s.data) >= n


def blob(i: int) -> str:
    return f"{i}:".ljust(SIZE, "x")


def small_buffer_socket(port: int) -> socket.socket:
    """A connected socket whose receive buffer is small: once its client stops reading, the
    server's writes block soon (as bench/slow_broadcast.py's slow member)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def until(check: Any, what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


async def test_a_member_whose_client_stops_reading_blocks_then_1013_then_resumes_exactly() -> None:
    limits = QueueLimits(max_messages=16, max_bytes=None, policy="block", block_timeout=0.5)
    app = resume_app.make_app(broker="memory://?history=10000", queue_limits=limits)
    async with serve(app) as server:
        base = server.ws_url("/")
        slow = Stream()
        sock = small_buffer_socket(server.port)
        ws = await connect(f"{base}?ws_resume=new", sock=sock, ping_interval=None, max_size=None, compression=None)
        OPENED.append(ws)
        await read_until(ws, slow, lambda s: s.session_id is not None)
        await ws.send("join feed")
        await read_until(ws, slow, got(1))
        session = app.live[slow.session_id]  # type: ignore[index]
        bystander, other = Stream(), Stream()
        reader = await opened(base, other, max_size=None)
        await reader.send("join feed")
        await read_until(reader, other, got(1))

        ws.transport.pause_reading()  # the client stops reading
        publisher = await opened(base, bystander)
        await publisher.send("blobs feed 800 10000")
        # The room is not stalled by the slow member: the other one gets everything meanwhile.
        await read_until(reader, other, got(801), timeout=30)
        assert other.data[1:] == [blob(i) for i in range(800)]
        # The slow member's messages waited for room in its queue (block), then it was closed.
        await until(lambda: session.conn.close_code == 1013, "closed with 1013")
        assert session.seq == 801  # every room message was numbered: none was dropped

        ws.transport.resume_reading()  # what reached the client's buffers, then the close frame
        with pytest.raises(ConnectionClosed) as closed:
            await read_until(ws, slow, got(10**6), timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        received = len(slow.data)
        assert 1 < received < 801
        assert slow.data == ["joined feed", *(blob(i) for i in range(received - 1))]

        again = await opened(base, slow, max_size=None)  # resumes from the last frame it really got
        resumed = slow.last("resumed")
        assert resumed["seq"] == received and resumed["replay"] == 801 - received
        await read_until(again, slow, got(801), timeout=30)
        assert slow.data == ["joined feed", *(blob(i) for i in range(800))]  # all, once, in order
        await publisher.send("publish feed live")
        await read_until(again, slow, got(802))
        assert slow.data[-1] == "live" and resumed["room_gap"] is False
    await app.close()


# -- a SIGKILLed worker, on each broker keeping history across processes -----------------------


@pytest.fixture(params=["redis", "postgres", "nats"])
async def history_broker(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A broker URL with history, of its own (a prefix), on the machine's Redis, PostgreSQL, NATS."""
    kind = request.param
    url = request.getfixturevalue(f"{kind}_url")
    tag = uuid.uuid4().hex[:10]
    if kind == "redis":
        yield f"{url}?prefix=resume-{tag}:&history=10000"
    elif kind == "postgres":
        yield f"{url}?prefix=r{tag}_&history=10000"
        await drop_tables(url, f"r{tag}_")
    else:
        yield f"{url}?prefix=asgi_ws_test.r{tag}&history=10000&history_storage=memory"
        await delete_streams(url, f"asgi_ws_test.r{tag}")


CLIENTS = 10


async def test_members_of_a_sigkilled_worker_resume_on_another_with_every_message_once(
    history_broker: str, redis_url: str
) -> None:
    env = {
        **os.environ,
        "ASGI_WS_TEST_STORE": f"{redis_url}?prefix=asgi_ws_test_{uuid.uuid4().hex[:8]}:",
        "ASGI_WS_TEST_BROKER": history_broker,
        "ASGI_WS_TEST_NS": f"kill{uuid.uuid4().hex[:8]}",
    }
    with (
        uvicorn_process("tests.resume.resume_app:app", env=env) as one,
        uvicorn_process("tests.resume.resume_app:app", env=env) as two,
    ):
        sockets, streams = await members(f"ws://127.0.0.1:{one.port}/", CLIENTS, "feed")
        (publisher,), (mine,) = await members(f"ws://127.0.0.1:{two.port}/", 1, "feed")  # on the worker that stays
        await publisher.send("count feed 50")  # a run of room messages...
        await asyncio.gather(*(read_until(ws, s, got(51)) for ws, s in zip(sockets, streams, strict=True)))
        for ws in sockets:
            await ws.send("emit 1 4")  # ...frames of the session's own (stored in full)...
        await asyncio.gather(*(read_until(ws, s, got(54)) for ws, s in zip(sockets, streams, strict=True)))
        await publisher.send("count feed 50")  # ...and a run again, cut short by the SIGKILL
        await read_until(publisher, mine, got(101))
        one.proc.send_signal(signal.SIGKILL)
        one.proc.wait(10)
        await publisher.send("count feed 100")  # published while the members are away
        await read_until(publisher, mine, got(201))
        sockets = await asyncio.gather(*(opened(f"ws://127.0.0.1:{two.port}/", s) for s in streams))
        await asyncio.gather(*(read_until(ws, s, got(204), 30) for ws, s in zip(sockets, streams, strict=True)))
        expected = ["joined feed", *map(str, range(50)), "1", "2", "3", *map(str, range(50)), *map(str, range(100))]
        for stream in streams:
            assert stream.data == expected
            assert stream.last("resumed")["rooms"] == ["feed"] and stream.last("resumed")["room_gap"] is False
        await publisher.send("publish feed live")  # and the run goes on, live
        await asyncio.gather(*(read_until(ws, s, got(205)) for ws, s in zip(sockets, streams, strict=True)))
        assert all(s.data[-1] == "live" for s in streams)
