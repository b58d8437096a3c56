"""Real servers, a hostile client, and a bystander who must not notice it.

One uvicorn server per test, up for every Hypothesis example: ``asgi-ws serve``'s app
(``build_app``: PubSubApp behind Heartbeat, Resume, Backpressure and RateLimit), and a plain
Starlette endpoint behind HeartbeatMiddleware whose app publishes what it receives to a room.
In each example an attacker connection sends arbitrary frames, then a ping; it must get
documented answers (or a documented close). A bystander, in the same channels with presence,
must then still get a publish; nothing may be logged at ERROR or with a traceback.

The server, the bystander and every attacker run on one event loop in a thread of their own,
so that they outlive the examples; each example is submitted to it and waited for (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import HeartbeatMiddleware, Rooms
from asgi_ws.cli import build_app
from tests.hardening.strategies import CHANNELS, control_texts
from tests.support.logs import captured_logs, describe, is_error, no_server_errors
from tests.support.server import serve

T = TypeVar("T")

#: What the server may send an attacker, by docs/protocol.md (§3, §4, §7, §9).
SERVER_OPS = {"welcome", "ping", "pong", "error", "subscribed", "unsubscribed", "published", "presence",
              "presence_diff", "session", "resumed", "resume_failed"}  # fmt: skip
ERROR_CODES = {"bad_json", "bad_message", "bad_field", "too_deep", "forbidden", "too_many_subscriptions",
               "too_large", "unexpected_message", "unknown_op", "unsupported_version", "rate_limited"}  # fmt: skip
WAIT = 5.0  # seconds any one frame may take to arrive

#: The exact reports of issue 8, and their relatives: each is sent as it is, on the wire.
REGRESSIONS = [
    '{"$ws":"ping","id":"\\ud800"}',
    '{"$ws":"\\ud800"}',
    '{"$ws":"subscribe","channel":"\\ud800"}',
    '{"$ws":"subscribe","channel":"c0","presence":true,"meta":{"name":"\\ud800"}}',
    '{"$ws":"subscribe","channel":"c0","presence":true,"meta":{"\\udc00":1}}',
    '{"$ws":"publish","channel":"c0","data":"\\ud800"}',
    '{"$ws":"publish","channel":"c0","data":[NaN, Infinity, 1e999]}',
    '{"$ws":"presence","channel":"c0","id":123456789012345678901234567890}',
    '{"$ws":"publish","channel":"c0","data":' + "[" * 200 + "]" * 200 + "}",
    '{"$ws":"hello","v":1e999}',
]

# -- a loop in a thread ------------------------------------------------------------------------


class LoopThread:
    """An event loop running in a thread; coroutines are submitted to it and waited for."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hardening-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"{what} did not finish within {timeout} s") from None

    def close(self) -> None:
        async def cancel_the_rest() -> None:  # the rooms' presence tasks, when no lifespan closed them
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(AssertionError):
            self.run(cancel_the_rest(), 10, "cancelling the leftover tasks")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def within(awaitable: Awaitable[T], what: str, timeout: float = WAIT) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what} did not arrive within {timeout} s") from None


def strict_json(text: str) -> Any:
    """Parse as a strict client (a browser's JSON.parse) would: no NaN, no Infinity."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"the server sent {constant}, which is not JSON: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


# -- the frames of an attack ------------------------------------------------------------------


class Frame:
    """One frame of an attack; ``closes``: the close code it must bring (None: an answer)."""

    __slots__ = ("closes", "data", "text")

    def __init__(self, data: str | bytes, *, text: bool = True, closes: int | None = None) -> None:
        self.data, self.text, self.closes = data, text, closes

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example: kept short
        data = repr(self.data[:200]) + ("..." if len(self.data) > 200 else "")
        return f"Frame({data}, text={self.text}, closes={self.closes})"


ORDINARY = st.one_of(
    control_texts(wire=True).map(Frame),
    control_texts(wire=True).map(Frame),
    control_texts(wire=True).map(Frame),
    st.sampled_from(REGRESSIONS).map(Frame),
    st.binary(max_size=40).map(lambda data: Frame(data, text=False)),
    st.text(max_size=20).map(Frame),  # an application message (PubSubApp: unexpected_message)
)
TERMINAL = st.sampled_from(
    [
        Frame(b'{"$ws":"ping","id":"\xff\xfe"}', closes=1007),  # a text frame that is not UTF-8
        Frame(b"\xed\xa0\x80", closes=1007),  # a surrogate encoded in UTF-8: not UTF-8 either
        Frame('{"$ws":"ping","pad":"' + "x" * 70_000 + '"}', closes=1009),  # over max_message_size
    ]
)


@st.composite
def attacks(draw: st.DrawFn) -> tuple[list[Frame], bool]:
    frames = draw(st.lists(ORDINARY, min_size=1, max_size=6))
    if draw(st.integers(0, 11)) == 0:
        frames.append(draw(TERMINAL))
    return frames, draw(st.booleans())  # and whether to ask for a resumable session


# -- the arena: one server, a bystander, a publisher -------------------------------------------


def assert_no_error(records: list[logging.LogRecord]) -> None:
    """No record at ERROR or with a traceback, from any logger (uvicorn.error, asgi_ws, asyncio...).

    Allowed: uvicorn's websockets-sansio implementation logs an invalid UTF-8 text frame
    (which it closes with 1007) as an exception of its own, not the library's.
    """
    invalid_utf8 = "Invalid UTF-8 sequence received from client."
    bad = [r for r in records if is_error(r) and not (r.name == "uvicorn.error" and r.getMessage() == invalid_utf8)]
    assert not bad, f"the server logged:\n{describe(bad)}"


@dataclass
class Arena:
    """A running server, a bystander and a publisher, on their own loop."""

    loop: LoopThread
    url: str
    origin: str
    logs: list[logging.LogRecord]  # WARNING and above, from every logger
    #: Checks one frame the attacker received.
    check_attacker_frame: Callable[[str | bytes], None]
    #: ``publish(publisher, channel, marker)`` and ``delivery(frame) -> (channel, marker) | None``.
    publish: Callable[[ClientConnection, str, str], Awaitable[None]]
    delivery: Callable[[str | bytes], tuple[str, str] | None]
    channels: tuple[str, ...]
    #: The endpoint closes messages over 64 KiB with 1009 (RateLimitMiddleware); else they are answered.
    size_limit: bool
    bystander: ClientConnection | None = None
    publisher: ClientConnection | None = None
    markers: Iterator[int] = field(default_factory=itertools.count)

    async def connect(self, query: str = "") -> ClientConnection:
        return await connect(
            self.url + query, origin=self.origin, ping_interval=None, open_timeout=WAIT, close_timeout=2, max_size=None
        )

    def run_example(self, frames: list[Frame], resumable: bool) -> None:
        sentinel = f"end-{next(self.markers)}"
        self.loop.run(self.attack(frames, resumable, sentinel), 30, f"the attack {frames!r}")
        self.loop.run(self.bystander_still_served(), 30, "the bystander's deliveries")
        assert_no_error(self.logs)

    async def attack(self, frames: list[Frame], resumable: bool, sentinel: str) -> None:
        ws = await self.connect("?ws_resume=new" if resumable else "")
        expected = frames[-1].closes
        if expected == 1009 and not self.size_limit:
            expected = None  # a control message over 64 KiB is answered with too_large
        try:
            for frame in frames:
                await ws.send(frame.data, text=frame.text)
            if expected is None:
                await ws.send(json.dumps({"$ws": "ping", "id": sentinel}))
            while True:
                try:
                    reply = await within(ws.recv(), f"the attacker's pong {sentinel!r} (or close {expected})")
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
                    assert expected is not None, f"the attacker was disconnected ({code}) instead of answered"
                    assert code == expected, f"the attacker was closed with {code}, not {expected}"
                    return
                self.check_attacker_frame(reply)
                if isinstance(reply, str) and strict_json(reply) == {"$ws": "pong", "id": sentinel}:
                    assert expected is None, f"the attacker was answered, not closed with {expected}"
                    return
        finally:
            await ws.close()

    async def bystander_still_served(self) -> None:
        """The publisher publishes a fresh marker on every channel: the bystander must get each."""
        assert self.bystander is not None and self.publisher is not None
        marker = f"marker-{next(self.markers)}"
        wanted = set()
        for channel in self.channels:
            await self.publish(self.publisher, channel, marker)
            wanted.add((channel, marker))
        while wanted:
            frame = await within(self.bystander.recv(), f"the bystander's delivery of {sorted(wanted)}")
            if isinstance(frame, str) and frame.startswith('{"$ws"'):
                message = strict_json(frame)
                assert message["$ws"] in SERVER_OPS and "code" not in message, message
                if message["$ws"] == "ping":
                    await self.bystander.send(json.dumps({"$ws": "pong", "id": message["id"]}))
                continue
            wanted.discard(self.delivery(frame))  # type: ignore[arg-type]


@contextlib.contextmanager
def arena(
    app: Any,
    setup: Callable[[Arena], Coroutine[Any, Any, None]],
    **options: Any,
) -> Iterator[Arena]:
    """Serve ``app`` on a loop of its own, run ``setup`` (the bystander's), yield; check the logs at the end."""
    with captured_logs(logging.WARNING) as logs:
        loop = LoopThread()
        server_cm = serve(app, log_config=None, log_level="warning", lifespan="off")
        try:
            server = loop.run(server_cm.__aenter__(), 30, "the server's start")
            place = Arena(loop, server.ws_url("/ws"), f"http://127.0.0.1:{server.port}", logs, **options)
            try:
                loop.run(setup(place), 30, "the bystander's setup")
                yield place
            finally:
                for ws in (place.bystander, place.publisher):
                    if ws is not None:
                        loop.run(ws.close(), 10, "closing a client")
                loop.run(server_cm.__aexit__(None, None, None), 30, "the server's stop")
        finally:
            loop.close()
    assert_no_error(logs)


# -- asgi-ws serve -------------------------------------------------------------------------------


def check_pubsub_frame(frame: str | bytes) -> None:
    assert isinstance(frame, str), f"PubSubApp sent a binary frame: {frame!r}"
    message = strict_json(frame)
    if frame.startswith('{"$ws"'):
        assert message["$ws"] in SERVER_OPS, message
        if message["$ws"] == "error":
            assert message["code"] in ERROR_CODES, message
    else:  # a delivery
        assert set(message) in ({"channel", "data"}, {"channel", "binary"}), message


async def pubsub_publish(ws: ClientConnection, channel: str, marker: str) -> None:
    await ws.send(json.dumps({"$ws": "publish", "channel": channel, "data": {"marker": marker}}))


def pubsub_delivery(frame: str | bytes) -> tuple[str, str] | None:
    check_pubsub_frame(frame)
    message = strict_json(frame)  # type: ignore[arg-type]
    data = message.get("data")
    return (message["channel"], data["marker"]) if isinstance(data, dict) and "marker" in data else None


async def subscribe_with_presence(place: Arena) -> None:
    place.bystander = await place.connect()
    place.publisher = await place.connect()
    await place.bystander.send(json.dumps({"$ws": "hello", "v": 1}))
    assert strict_json(await within(place.bystander.recv(), "welcome"))["$ws"] == "welcome"
    for channel in CHANNELS:
        request = {"$ws": "subscribe", "channel": channel, "presence": True, "meta": {"name": "bystander"}}
        await place.bystander.send(json.dumps(request))
        reply = strict_json(await within(place.bystander.recv(), f"the bystander's subscription to {channel}"))
        assert reply["$ws"] == "subscribed", reply


@pytest.fixture
def serve_arena() -> Iterator[Arena]:
    """``asgi-ws serve``'s app (a high rate limit: the attacker is not to be rate limited)."""
    app = build_app(demo=False, rate=100_000, heartbeat_interval=20)
    with arena(app, subscribe_with_presence, check_attacker_frame=check_pubsub_frame, publish=pubsub_publish,
               delivery=pubsub_delivery, channels=CHANNELS, size_limit=True) as place:  # fmt: skip
        yield place


# One server for the whole test: the fixture is set up once, and Hypothesis runs every example
# inside that one call of the test.
FIXTURE_ONCE = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@settings(FIXTURE_ONCE, max_examples=200)
@given(attack=attacks())
def test_asgi_ws_serve_survives_any_client(serve_arena: Arena, attack: tuple[list[Frame], bool]) -> None:
    serve_arena.run_example(*attack)


# -- a Starlette endpoint behind HeartbeatMiddleware ---------------------------------------------


def starlette_app(rooms: Rooms) -> Any:
    """Every message a client sends is published to the others in "lobby"."""

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await rooms.join("lobby", websocket, meta={"name": "someone"})
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            await rooms.publish("lobby", text if text is not None else message.get("bytes") or b"", exclude=websocket)

    return HeartbeatMiddleware(Starlette(routes=[WebSocketRoute("/ws", chat)]), interval=20, timeout=20)


def check_starlette_frame(frame: str | bytes) -> None:
    if isinstance(frame, str) and frame.startswith('{"$ws"'):
        message = strict_json(frame)  # the library's own; any other frame is what the room carried
        assert message["$ws"] in {"welcome", "ping", "pong", "error"}, message
        if message["$ws"] == "error":
            assert message["code"] in ERROR_CODES, message


async def raw_publish(ws: ClientConnection, channel: str, marker: str) -> None:
    await ws.send(marker)


def raw_delivery(frame: str | bytes) -> tuple[str, str] | None:
    return ("lobby", frame) if isinstance(frame, str) and frame.startswith("marker-") else None


@pytest.fixture
def starlette_arena() -> Iterator[Arena]:
    rooms = Rooms()

    async def setup(place: Arena) -> None:
        place.bystander = await place.connect()
        place.publisher = await place.connect()
        await place.bystander.send(json.dumps({"$ws": "hello", "v": 1}))
        assert strict_json(await within(place.bystander.recv(), "welcome"))["$ws"] == "welcome"
        while len(rooms.members("lobby")) < 2:  # both joined (bounded by the setup's timeout)
            await asyncio.sleep(0.01)

    with arena(starlette_app(rooms), setup, check_attacker_frame=check_starlette_frame, publish=raw_publish,
               delivery=raw_delivery, channels=("lobby",), size_limit=False) as place:  # fmt: skip
        yield place


@settings(FIXTURE_ONCE, max_examples=150)
@given(attack=attacks())
def test_a_starlette_endpoint_survives_any_client(starlette_arena: Arena, attack: tuple[list[Frame], bool]) -> None:
    starlette_arena.run_example(*attack)


# -- the two reports of issue 8, as plain tests ----------------------------------------------------


async def test_a_lone_surrogate_escape_is_refused_and_the_connection_lives() -> None:
    rooms = Rooms()
    with no_server_errors(logging.WARNING):
        async with serve(starlette_app(rooms), log_config=None, log_level="warning") as server:
            url = server.ws_url("/ws")
            async with connect(url, ping_interval=None) as ws, connect(url, ping_interval=None) as other:
                cases = {
                    '{"$ws":"ping","id":"\\ud800"}': "ping",
                    '{"$ws":"\\ud800"}': None,
                    '{"$ws":"ping","\\udfff":1}': "ping",
                }
                for frame, ref in cases.items():
                    await ws.send(frame)
                    reply = strict_json(await within(ws.recv(), f"the answer to {frame}"))
                    assert (reply["$ws"], reply["code"], reply.get("ref")) == ("error", "bad_json", ref), reply
                await ws.send('{"$ws":"ping","id":1}')
                assert strict_json(await within(ws.recv(), "the pong")) == {"$ws": "pong", "id": 1}
                while len(rooms.members("lobby")) < 2:
                    await asyncio.sleep(0.01)
                await ws.send("still here")
                assert await within(other.recv(), "the other member's message") == "still here"
    await rooms.close()


async def test_a_subscriber_with_a_lone_surrogate_in_its_meta_disconnects_nobody() -> None:
    app = build_app(demo=False, rate=1000)
    with no_server_errors(logging.WARNING):
        async with serve(app, log_config=None, log_level="warning") as server:
            url, origin = server.ws_url("/ws"), f"http://127.0.0.1:{server.port}"
            clients = [await connect(url, origin=origin, ping_interval=None) for _ in range(3)]
            mallory, bob, carol = clients
            try:

                async def subscribe(ws: ClientConnection, meta: str) -> Any:
                    await ws.send('{"$ws":"subscribe","channel":"lobby","presence":true,"meta":' + meta + "}")
                    return strict_json(await within(ws.recv(), "the answer to a subscribe"))

                refused = await subscribe(mallory, '{"name":"\\ud800"}')
                assert (refused["code"], refused["ref"]) == ("bad_json", "subscribe")
                joined = await subscribe(bob, '{"name":"bob"}')
                assert joined["$ws"] == "subscribed"
                assert [m["meta"] for m in joined["members"]] == [{"name": "bob"}]
                assert (await subscribe(carol, '{"name":"carol"}'))["$ws"] == "subscribed"
                diff = strict_json(await within(bob.recv(), "carol's join"))
                assert (diff["$ws"], diff["join"]["meta"]) == ("presence_diff", {"name": "carol"})
                assert (await subscribe(mallory, '{"name":"mallory"}'))["$ws"] == "subscribed"
                for ws in (bob, carol):
                    diff = strict_json(await within(ws.recv(), "mallory's join"))
                    assert diff["join"]["meta"] == {"name": "mallory"}
            finally:
                for ws in clients:
                    await ws.close()
