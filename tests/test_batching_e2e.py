"""Batching end to end: real uvicorn (each WebSocket implementation), real clients that stop reading, then read.

An application sends numbered messages in bursts (text of every kind of character, binary
every 7th). A client that asked for batches in ``hello`` gets batch frames (from the bursts,
and from what queued while it did not read) that unpack to exactly the sequence sent; a plain
client gets the same sequence one frame a message and never a control frame; the Python
client unpacks them for the application; a resumable client cut in the middle of a batch
resumes with exactly what it missed. Every wait is bounded and says what did not happen.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect

from asgi_ws import BackpressureMiddleware, ResumeMiddleware, connection_of
from asgi_ws.client import connect as client_connect
from asgi_ws.connection import Connection
from asgi_ws.protocol import BATCH_PREFIX, PREFIX
from asgi_ws.types import Message, Receive, Scope, Send
from tests.support.server import serve

pytestmark = pytest.mark.e2e

WAIT = 30.0  # seconds, any one step
BATCH = {"max_messages": 256, "max_bytes": 65_536}  # BackpressureMiddleware's default BatchLimits


def number(i: int, size: int) -> Message:
    """The i-th message: binary for multiples of 7, else text with quotes, escapes and non-ASCII every 5th."""
    if i % 7 == 0:
        return {"type": "websocket.send", "bytes": f"{i}:".encode().ljust(size, b"\x00")}
    head = f"{i}:" + ('"q" \\ \n\t é😀 {"$ws"' if i % 5 == 0 else "")
    return {"type": "websocket.send", "text": head.ljust(size, "x")}


def expected(start: int, stop: int, size: int) -> list[str | bytes]:
    return [m.get("text") or m["bytes"] for m in (number(i, size) for i in range(start, stop))]


class Emitter:
    """``emit A B SIZE``: send messages A .. B-1 of about SIZE bytes, in one burst (no await suspends)."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        #: Messages sent so far, per connection (in the order of ``connections``).
        self.emitted: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        conn = connection_of(scope)
        assert conn is not None
        self.connections.append(conn)
        self.emitted.append(0)
        index = len(self.emitted) - 1
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            _, start, stop, size = message["text"].split()
            for i in range(int(start), int(stop)):
                await send(number(i, int(size)))
            self.emitted[index] += int(stop) - int(start)


def bounded(app: Any) -> BackpressureMiddleware:
    # Limits high enough never to drop (drop_newest: a drop would show as a missing message).
    return BackpressureMiddleware(app, max_messages=100_000, max_bytes=256 << 20, policy="drop_newest")


@dataclass
class Received:
    """What a client got: every message (batches unpacked), the batch frames' sizes, the control frames."""

    messages: list[str | bytes] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)

    def take(self, frame: str | bytes) -> None:
        if isinstance(frame, str) and frame.startswith(PREFIX):
            control = json.loads(frame)
            if control["$ws"] == "batch":
                assert frame.startswith(BATCH_PREFIX)
                self.batches.append(control["m"])
                self.messages.extend(control["m"])
            else:
                self.controls.append(control)
        else:
            self.messages.append(frame)


async def until(what: str, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


async def read(ws: ClientConnection, received: Received, what: str, done: Callable[[Received], bool]) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not done(received):
                received.take(await ws.recv())
    except TimeoutError:
        raise AssertionError(f"{what}: not within {WAIT} s ({len(received.messages)} messages)") from None


async def slow_client(url: str) -> ClientConnection:
    """A client with a small receive buffer, so that the server's writes block soon after it stops reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = url.split("//")[1].split("/")[0].split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, sock=sock, compression=None, max_size=None, max_queue=1, ping_interval=None)


async def opt_in(ws: ClientConnection, received: Received) -> None:
    await ws.send(json.dumps({"$ws": "hello", "v": 1, "batch": True}))
    await read(ws, received, "welcome", lambda r: any(c["$ws"] == "welcome" for c in r.controls))
    welcome = next(c for c in received.controls if c["$ws"] == "welcome")
    assert welcome["features"]["batch"] == BATCH


def check_bounds(batches: list[list[str]]) -> None:
    for batch in batches:
        assert 2 <= len(batch) <= BATCH["max_messages"]
        assert sum(len(text.encode()) for text in batch) <= BATCH["max_bytes"]


async def test_a_client_that_stops_reading_then_reads_gets_batches_only_if_it_asked(ws_impl: str) -> None:
    app = Emitter()
    async with serve(bounded(app), ws=ws_impl) as server:
        asked, plain = await slow_client(server.ws_url("/")), await slow_client(server.ws_url("/"))
        got = {"asked": Received(), "plain": Received()}
        await opt_in(asked, got["asked"])
        await until("both connections on the server", lambda: len(app.connections) == 2)
        for ws in (asked, plain):
            assert ws.transport is not None
            ws.transport.pause_reading()  # the client stops reading
            await ws.send("emit 0 3000 2000")  # 6 MB: more than the kernel and uvicorn buffer
        await until("both servers' writes blocked", lambda: all(c.outbound._writer for c in app.connections))
        for ws in (asked, plain):
            await ws.send("emit 3000 4000 100")  # these queue behind the blocked write
        await until("every message sent by the application", lambda: app.emitted == [4000, 4000])
        assert all(c.outbound._writer and c.outbound.queued >= 1000 for c in app.connections)  # still blocked
        for ws in (asked, plain):
            assert ws.transport is not None
            ws.transport.resume_reading()  # ...then reads
        for name, ws in (("asked", asked), ("plain", plain)):
            await read(ws, got[name], f"every message to the {name} client", lambda r: len(r.messages) >= 4000)
        sent = expected(0, 3000, 2000) + expected(3000, 4000, 100)
        # The client that asked: batch frames that unpack to exactly the sequence sent, in order.
        assert got["asked"].messages == sent
        check_bounds(got["asked"].batches)
        # Batches of the second burst, which was sent while the write was blocked: made by the
        # writer from the queue once the client read again.
        assert any(len(b) >= 2 and all(len(text) == 100 for text in b) for b in got["asked"].batches)
        assert app.connections[0].outbound.batches == len(got["asked"].batches)
        # The plain client: the same sequence, one frame a message, never a control frame.
        assert got["plain"].messages == sent
        assert got["plain"].batches == [] and got["plain"].controls == []
        assert app.connections[1].outbound.batches == 0
        await asked.close()
        await plain.close()


async def test_a_burst_goes_as_its_first_message_then_batches_and_one_a_turn_goes_alone(ws_impl: str) -> None:
    app = Emitter()
    async with serve(bounded(app), ws=ws_impl) as server:
        async with connect(server.ws_url("/"), compression=None) as ws:
            received = Received()
            await opt_in(ws, received)
            await ws.send("emit 1 600 50")
            await read(ws, received, "the burst", lambda r: len(r.messages) >= 599)
            assert received.messages == expected(1, 600, 50)
            assert received.batches and received.messages[0] == expected(1, 2, 50)[0]  # the first, alone
            check_bounds(received.batches)
            batches = len(received.batches)
            for i in range(600, 605):  # one message a command: each goes alone, at once
                await ws.send(f"emit {i} {i + 1} 50")
                await read(ws, received, f"message {i}", lambda r, n=i: len(r.messages) >= n)
            assert received.messages == expected(1, 605, 50) and len(received.batches) == batches


@dataclass
class Session:
    """A resumable protocol-level client that unpacks batches and counts messages (not frames)."""

    received: Received = field(default_factory=Received)
    token: str | None = None

    def url(self, base: str) -> str:
        if self.token is None:
            return f"{base}?ws_resume=new"
        return f"{base}?ws_resume={quote(self.token)}&ws_seq={len(self.received.messages)}"

    async def open(self, base: str) -> ClientConnection:
        ws = await connect(self.url(base), compression=None, max_size=None, ping_interval=None)
        before = len(self.received.controls)
        answered = ("session", "resumed", "resume_failed")
        await read(ws, self.received, "the session", lambda r: any(c["$ws"] in answered for c in r.controls[before:]))
        answer = next(c for c in self.received.controls[before:] if c["$ws"] in answered)
        assert answer["$ws"] != "resume_failed", answer
        self.token = answer["token"]
        await opt_in(ws, self.received)
        return ws


async def test_a_resumable_client_cut_in_the_middle_of_a_batch_resumes_exactly(ws_impl: str) -> None:
    app = ResumeMiddleware(bounded(Emitter()), secret_keys=["batch-resume-test-key"], window=60)
    async with serve(app, ws=ws_impl) as server:
        session = Session()
        ws = await session.open(server.ws_url("/"))
        await ws.send("emit 1 3001 300")
        received = session.received
        # Read until a batch frame arrives past the 1,000th message; take only half of it (the
        # application processed part of the batch when the connection was cut), then cut.
        async with asyncio.timeout(WAIT):
            while True:
                frame = await ws.recv()
                if isinstance(frame, str) and frame.startswith(BATCH_PREFIX) and len(received.messages) >= 1000:
                    batch = json.loads(frame)["m"]
                    if len(batch) >= 2:
                        received.messages.extend(batch[: len(batch) // 2])
                        break
                received.take(frame)
        count = len(received.messages)
        assert ws.transport is not None
        ws.transport.abort()  # cut: the rest of that batch and whatever followed it are lost
        ws = await session.open(server.ws_url("/"))
        resumed = next(c for c in received.controls if c["$ws"] == "resumed")
        assert resumed["seq"] == count  # the server's seq and the client's count of messages agree
        await read(ws, received, "the replay and the rest", lambda r: len(r.messages) >= 3000)
        await ws.send("emit 3001 3101 300")  # and counting goes on in batches after the resume
        await read(ws, received, "after the resume", lambda r: len(r.messages) >= 3100)
        assert received.messages == expected(1, 3101, 300)
        await ws.close()


async def test_the_python_client_unpacks_batches_and_resumes_across_a_cut() -> None:
    emitter = Emitter()
    app = ResumeMiddleware(bounded(emitter), secret_keys=["batch-resume-test-key"], window=60)
    async with serve(app) as server:
        async with client_connect(server.ws_url("/"), max_queue=64) as client:
            await until("the welcome", lambda: "batch" in client.features)
            await client.send("emit 1 2001 200")
            got: list[str | bytes] = []
            async with asyncio.timeout(WAIT):
                while len(got) < 700:
                    got.append(await client.recv())
                assert client._link is not None
                client._link.ws.transport.abort()  # cut mid-stream: the client resumes by itself
                while len(got) < 2000:
                    got.append(await client.recv())
            assert got == expected(1, 2001, 200)
            assert sum(c.outbound.batches for c in emitter.connections) > 0  # it did get batches
            assert client.received == 2000
