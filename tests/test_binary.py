"""Binary frames pass through everything unchanged: every middleware (alone and stacked) under
each uvicorn implementation, Rooms fan-out, session resumption, and both clients (the browser
client's tests are in tests/browser/test_binary_client.py, beside its Chromium fixture).

The payloads: every byte value (in every position mod 256), the empty message, and 1 MiB of
pseudo-random bytes. "Unchanged" means the same bytes, delivered as a binary frame (never as
text), in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    ConnectionLimitMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    ResumeMiddleware,
    Rooms,
    SubprotocolMiddleware,
)
from asgi_ws.auth import SignedTicket
from asgi_ws.client import connect as client_connect
from asgi_ws.types import ASGIApp, Message, Receive, Scope, Send
from tests.support.logs import no_server_errors
from tests.support.server import serve

EVERY_BYTE = bytes(range(256)) + bytes(range(255, -1, -1))
EMPTY = b""
MIB = random.Random(12).randbytes(1 << 20)
PAYLOADS = [EVERY_BYTE, EMPTY, MIB]
ORIGIN = "https://app.example.com"
KEY = "binary-tests-signing-key-0123456789"
TICKETS = SignedTicket([KEY], max_age=600)
WAIT = 20.0


def digest(data: bytes) -> str:
    """Short enough to read in a failure, exact enough to compare."""
    return f"{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}"


class EchoProbe:
    """A bare ASGI app that echoes every frame as it came, and records what it received; the
    text ``go`` is answered with the payloads (binary frames), then the text ``end``."""

    def __init__(self) -> None:
        self.received: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.received.append(message)
            if message.get("text") == "go":
                for payload in PAYLOADS:
                    await send({"type": "websocket.send", "bytes": payload})
                await send({"type": "websocket.send", "text": "end"})
            else:
                await send({**message, "type": "websocket.send"})


def ticket() -> str:
    return TICKETS.issue("binary-user")


# Each middleware alone, configured as an application would (limits far above 1 MiB where
# they measure size), then all of them in one stack. The client always sends the Origin, a
# ticket, a subprotocol and asks for a resumable session: a middleware that is absent ignores them.
STACKS: dict[str, Callable[[ASGIApp], ASGIApp]] = {
    "origin": lambda app: OriginMiddleware(app, allow_origins=[ORIGIN]),
    "auth": lambda app: AuthMiddleware(app, backend=TICKETS),
    "subprotocol": lambda app: SubprotocolMiddleware(app, supported=["bin.v1"]),
    "connlimit": lambda app: ConnectionLimitMiddleware(app, max_connections=10, max_per_ip=10),
    "heartbeat": lambda app: HeartbeatMiddleware(app, interval=5, timeout=5),
    "backpressure": lambda app: BackpressureMiddleware(app, max_messages=10, max_bytes=4 << 20),
    "ratelimit": lambda app: RateLimitMiddleware(app, rate=100, burst=100, max_message_size=2 << 20),
    "resume": lambda app: ResumeMiddleware(app, secret_keys=[KEY], max_bytes=16 << 20),
    "full stack": lambda app: ConnectionLimitMiddleware(
        OriginMiddleware(
            AuthMiddleware(
                SubprotocolMiddleware(
                    ResumeMiddleware(
                        HeartbeatMiddleware(
                            BackpressureMiddleware(
                                RateLimitMiddleware(app, rate=100, burst=100, max_message_size=2 << 20),
                                max_messages=10,
                                max_bytes=4 << 20,
                            ),
                            interval=5,
                            timeout=5,
                        ),
                        secret_keys=[KEY],
                        max_bytes=16 << 20,
                    ),
                    supported=["bin.v1"],
                ),
                backend=TICKETS,
            ),
            allow_origins=[ORIGIN],
        ),
        max_connections=10,
    ),
}


async def data_frames(ws: ClientConnection, count: int, *, what: str) -> list[str | bytes]:
    """The next ``count`` data frames (control messages, which start with ``{"$ws"``, skipped)."""
    frames: list[str | bytes] = []
    try:
        async with asyncio.timeout(WAIT):
            while len(frames) < count:
                frame = await ws.recv()
                if isinstance(frame, str) and frame.startswith('{"$ws"'):
                    continue
                frames.append(frame)
    except TimeoutError:
        raise AssertionError(f"{what}: {len(frames)} of {count} frames arrived within {WAIT} s") from None
    return frames


def assert_binary(got: list[Any], want: list[bytes], where: str) -> None:
    kinds = [type(frame).__name__ for frame in got]
    assert kinds == ["bytes"] * len(want), f"{where}: frames arrived as {kinds}, expected binary frames"
    assert [digest(g) for g in got] == [digest(w) for w in want], where
    assert got == want, where


@pytest.mark.parametrize("stack", list(STACKS))
async def test_binary_frames_pass_unchanged_through_each_middleware(stack: str, ws_impl: str) -> None:
    probe = EchoProbe()
    with no_server_errors():
        async with serve(STACKS[stack](probe), ws=ws_impl, log_config=None) as server:
            url = server.ws_url(f"/bin?ticket={ticket()}&ws_resume=new")
            async with connect(
                url,
                origin=ORIGIN,
                subprotocols=["bin.v1"],
                max_size=4 << 20,
                open_timeout=10,  # type: ignore[list-item]
            ) as ws:
                for payload in PAYLOADS:
                    await ws.send(payload)
                echoed = await data_frames(ws, len(PAYLOADS), what=f"the echo through {stack}")
    where = f"{stack} under uvicorn --ws {ws_impl}"
    received = [m.get("bytes") for m in probe.received]
    assert [m.get("text") for m in probe.received] == [None] * len(PAYLOADS), f"{where}: the app got text"
    assert_binary(received, PAYLOADS, f"{where}: what the app received")
    assert_binary(echoed, PAYLOADS, f"{where}: what the client received back")


# -- Rooms ----------------------------------------------------------------------------------


def member_app(rooms: Rooms, joined: asyncio.Event, count: int) -> ASGIApp:
    """Members join room ``r`` in the format of their ``?format=``; ``count`` joins set ``joined``."""
    members = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal members
        await receive()
        await send({"type": "websocket.accept"})
        fmt = "channel" if b"format=channel" in scope["query_string"] else "raw"
        await rooms.join("r", scope, format=fmt)
        members += 1
        if members == count:
            joined.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return BackpressureMiddleware(app, max_messages=10, max_bytes=4 << 20)


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_rooms_fan_out_binary_raw_and_channel_formats(broker: str, request: pytest.FixtureRequest) -> None:
    """raw members get the bytes as a binary frame; channel members get ``{"channel", "binary": base64}``
    text. On Redis the publish is made by another Rooms (another node: another process's view)."""
    if broker == "memory":
        url = "memory://"
        rooms = publisher = Rooms(url, presence=False)
    else:
        url = f"{request.getfixturevalue('redis_url')}?prefix=binary-{uuid.uuid4().hex[:8]}:"
        rooms, publisher = Rooms(url, presence=False), Rooms(url, presence=False)
    joined = asyncio.Event()
    async with rooms:
        if publisher is not rooms:
            await publisher.start()
        try:
            async with serve(member_app(rooms, joined, 4)) as server:
                raw = [await connect(server.ws_url("/?format=raw"), max_size=4 << 20) for _ in range(2)]
                channel = [await connect(server.ws_url("/?format=channel"), max_size=4 << 20) for _ in range(2)]
                await asyncio.wait_for(joined.wait(), WAIT)
                for payload in PAYLOADS:
                    await publisher.publish("r", payload)
                for ws in raw:
                    assert_binary(await data_frames(ws, 3, what="raw deliveries"), PAYLOADS, f"{broker}: raw member")
                for ws in channel:
                    frames = await data_frames(ws, 3, what="channel deliveries")
                    assert all(isinstance(f, str) for f in frames), f"{broker}: channel deliveries are text"
                    decoded = [json.loads(f) for f in frames]
                    assert [set(d) for d in decoded] == [{"channel", "binary"}] * 3
                    assert [base64.b64decode(d["binary"], validate=True) for d in decoded] == PAYLOADS
                for ws in raw + channel:
                    await ws.close()
        finally:
            if publisher is not rooms:
                await publisher.close()


# -- Resumption -------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_resumption_replays_binary_exactly(store: str, ws_impl: str, request: pytest.FixtureRequest) -> None:
    store_url = "memory://"
    if store == "redis":
        store_url = f"{request.getfixturevalue('redis_url')}?prefix=binary-sessions-{uuid.uuid4().hex[:8]}:"
    app = ResumeMiddleware(EchoProbe(), secret_keys=[KEY], store=store_url, max_bytes=16 << 20)
    with no_server_errors():
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(app.close)  # the store's connections, once the server stopped
            server = await stack.enter_async_context(serve(app, ws=ws_impl, log_config=None))
            ws = await connect(server.ws_url("/?ws_resume=new"), max_size=4 << 20)
            session = json.loads(await ws.recv())
            assert session["$ws"] == "session", session
            await ws.send("go")
            await ws.send("go")
            # The first round arrives; then the connection is cut (no close frame) before
            # the client reads the second: it resumes having counted 4 data frames.
            first = await data_frames(ws, 4, what="the first round")
            assert_binary(first[:3], PAYLOADS, "before the cut")
            # Wait until the server has sent the second round's end marker, then cut.
            second_seen = await data_frames(ws, 4, what="the second round")
            assert second_seen[-1] == "end"
            ws.transport.abort()
            await ws.wait_closed()
            url = server.ws_url(f"/?ws_resume={quote(session['token'])}&ws_seq=4")
            async with connect(url, max_size=4 << 20) as again:
                resumed = json.loads(await again.recv())
                assert resumed["$ws"] == "resumed", resumed
                assert (resumed["seq"], resumed["replay"]) == (4, 4)
                replay = await data_frames(again, 4, what="the replay")
    assert_binary(replay[:3], PAYLOADS, f"the replay from the {store} store under {ws_impl}")
    assert replay[3] == "end"


# -- The clients ------------------------------------------------------------------------------


async def test_python_client_sends_and_receives_binary() -> None:
    """asgi_ws.client against a real server with heartbeat and resumption: bytes both ways."""
    probe = EchoProbe()
    app = ResumeMiddleware(HeartbeatMiddleware(probe, interval=5, timeout=5), secret_keys=[KEY], max_bytes=16 << 20)
    async with serve(app) as server:
        async with client_connect(server.ws_url("/"), max_size=4 << 20) as client:
            for payload in PAYLOADS:
                await client.send(payload)
            got = [await asyncio.wait_for(client.recv(), WAIT) for _ in PAYLOADS]
    assert_binary([m.get("bytes") for m in probe.received], PAYLOADS, "what the server got from the Python client")
    assert_binary(got, PAYLOADS, "what the Python client got back")
