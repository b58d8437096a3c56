"""The Python client (asgi_ws.client) against a hostile or broken server.

A plain ``websockets`` server plays the server: after the client's ``hello`` it sends what the
test says (malformed control messages, members of the wrong type, a heartbeat announced at a
nanosecond, a ``resumed`` at a count the client never reached), then a sentinel data frame.
The client must hand the sentinel to the application, stay connected, keep its CPU and
memory, report what is wrong (a log line, an ``error`` event), and never log a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from asgi_ws.client import Backoff, Client, Event, connect
from asgi_ws.client.policy import MIN_HEARTBEAT
from tests.hardening.strategies import DEEP, TEXT, VALUES
from tests.hardening.test_e2e import LoopThread
from tests.support.logs import captured_logs, describe, is_error

Script = Callable[[ServerConnection, int], Awaitable[None]]

#: Every operation a server sends (docs/protocol.md), and some no server does.
SERVER_OPS = ("welcome", "ping", "pong", "error", "subscribed", "unsubscribed", "published", "presence",
              "presence_diff", "session", "resumed", "resume_failed", "batch", "hello", "ack", "close",
              "nope")  # fmt: skip
#: Members a client reads, for some operation.
SERVER_FIELDS = ("id", "v", "features", "channel", "code", "message", "ref", "members", "token", "seq", "window",
                 "rooms", "replay", "m", "reason")  # fmt: skip


class HostileServer:
    """A ``websockets`` server running ``script(ws, attempt)`` on each connection after the
    client's ``hello``; it answers the client's pings, and records what the client sent."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.received: list[str | bytes] = []
        self.attempts = 0
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        attempt = self.attempts
        self.attempts += 1
        self.received.append(await ws.recv())  # hello
        assert self.script is not None
        reader = asyncio.create_task(self._answer(ws))
        try:
            await self.script(ws, attempt)
            await reader
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()

    async def _answer(self, ws: ServerConnection) -> None:
        async for frame in ws:
            self.received.append(frame)
            if isinstance(frame, str) and frame.startswith('{"$ws":"ping"'):
                await ws.send(json.dumps({"$ws": "pong", "id": json.loads(frame).get("id")}))

    def pings(self) -> int:
        return sum(1 for f in self.received if isinstance(f, str) and f.startswith('{"$ws":"ping"'))


@contextlib.asynccontextmanager
async def hostile_server() -> AsyncIterator[HostileServer]:
    place = HostileServer()
    async with serve(place.handler, "127.0.0.1", 0, ping_interval=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        place.url = f"ws://127.0.0.1:{port}/"
        yield place


async def open_client(url: str, events: list[Event], **options: Any) -> Client:
    return await connect(url, ping_interval=None, on_event=events.append, open_timeout=5,
                         backoff=Backoff(base=0.01, cap=0.05, max_attempts=options.pop("attempts", 0)),
                         **options)  # fmt: skip


async def data_until(client: Client, sentinel: str) -> list[Any]:
    """Data frames up to the sentinel (bounded)."""
    seen: list[Any] = []
    async with asyncio.timeout(10):
        while (frame := await client.recv()) != sentinel:
            seen.append(frame)
    return seen


def no_client_errors(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if is_error(r)]
    assert not bad, f"the client logged:\n{describe(bad)}"


def sends(*frames: str) -> Script:
    async def script(ws: ServerConnection, attempt: int) -> None:
        for frame in frames:
            await ws.send(frame)

    return script


async def test_an_answer_whose_channel_is_not_a_string_is_ignored() -> None:
    """Before: ``{"$ws":"subscribed","channel":[1]}`` while a subscribe waited killed the client
    ("connection loop failed", TypeError: unhashable type) and failed every request."""
    events: list[Event] = []
    with captured_logs(logging.WARNING) as logs:
        async with hostile_server() as server:

            async def script(ws: ServerConnection, attempt: int) -> None:
                await ws.send("ready")
                while not any('"subscribe"' in str(f) for f in server.received):
                    await asyncio.sleep(0.01)
                for channel in ([1], {"a": 1}, 7, None):
                    for op in ("subscribed", "unsubscribed"):
                        await ws.send(json.dumps({"$ws": op, "channel": channel}))
                await ws.send(json.dumps({"$ws": "subscribed", "channel": "news"}))
                await ws.send("sentinel")

            server.script = script
            client = await open_client(server.url, events, resume=False)
            try:
                assert await client.recv() == "ready"
                answer = await asyncio.wait_for(client.subscribe("news"), 10)
                assert answer == {"$ws": "subscribed", "channel": "news"}
                assert await data_until(client, "sentinel") == []
                assert client.connected and not client.closed
            finally:
                await client.close()
    no_client_errors(logs)
    assert any("channel is not a string" in r.getMessage() for r in logs)
    assert [e.kind for e in events].count("connected") == 1


async def test_a_heartbeat_announced_at_a_nanosecond_does_not_make_the_client_spin() -> None:
    """Before: ``"interval": 1e-9`` and a server answering every ping made the client ping in a
    busy loop (1,691 pings in a second, 75% of a core)."""
    events: list[Event] = []
    async with hostile_server() as server:
        welcome = {"$ws": "welcome", "v": 1, "features": {"heartbeat": {"interval": 1e-9, "timeout": 1e-9}}}
        server.script = sends(json.dumps(welcome), "sentinel")
        client = await open_client(server.url, events, resume=False)
        try:
            assert await data_until(client, "sentinel") == []
            await asyncio.sleep(1.0)
            # At most one ping per MIN_HEARTBEAT (a loaded machine sends fewer, never more).
            assert server.pings() <= 1.0 / MIN_HEARTBEAT + 3, server.pings()
            assert client.connected
        finally:
            await client.close()


async def test_a_resumed_at_a_count_the_client_never_reached_is_reported() -> None:
    """A server resuming at a ``seq`` other than the client's count (frames skipped or sent
    twice), or at one that is not a count, is reported with an ``error`` event
    (``resume_mismatch``) and a warning; the client goes on, counting from the server's count
    when it is one."""
    for seq, counted_from in ((10**6, 10**6), (True, 1), (1.5, 1), (-3, 1), (2**60, 1), (1, 1)):
        events: list[Event] = []
        with captured_logs(logging.WARNING) as logs:
            async with hostile_server() as server:

                async def script(ws: ServerConnection, attempt: int, seq: Any = seq) -> None:
                    if attempt == 0:
                        await ws.send(json.dumps({"$ws": "session", "id": "s1", "token": "t1", "seq": 0, "window": 60}))
                        await ws.send("one")
                        await ws.close(1012)
                        return
                    await ws.send(json.dumps({"$ws": "resumed", "id": "s1", "token": "t2", "seq": seq, "replay": 0}))
                    await ws.send("sentinel")

                server.script = script
                client = await open_client(server.url, events, attempts=3)
                try:
                    assert await client.recv() == "one"
                    assert await data_until(client, "sentinel") == []
                    assert client.received == counted_from + 1
                    assert client.connected and not client.closed
                finally:
                    await client.close()
        no_client_errors(logs)
        mismatches = [e for e in events if e.kind == "error" and e.code == "resume_mismatch"]
        assert len(mismatches) == (0 if type(seq) is int and seq == 1 else 1), (seq, events)
        assert [e.kind for e in events].count("resumed") == 1


# -- anything a server may send --------------------------------------------------------------------


@st.composite
def server_messages(draw: st.DrawFn) -> str:
    """A control frame a server (a broken one, an attacker's) could send."""
    op = draw(st.sampled_from(SERVER_OPS)) if draw(st.integers(0, 9)) else draw(TEXT)
    fields: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(SERVER_FIELDS), max_size=5, unique=True)):
        fields[name] = draw(st.one_of(VALUES, DEEP, st.just(1e-9), st.just(10**6), st.lists(TEXT, max_size=3)))
    text = json.dumps({"$ws": op, **fields}, ensure_ascii=True, allow_nan=True)
    if draw(st.integers(0, 7)) == 0:
        text = text[: draw(st.integers(6, len(text)))]  # cut short: not JSON
    return text


FRAMES = st.lists(st.one_of(server_messages(), server_messages(), st.text(max_size=10), st.binary(max_size=10)),
                  min_size=1, max_size=8)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=FRAMES)
def test_whatever_a_server_sends_the_client_reads_on(frames: list[str | bytes]) -> None:
    loop = LoopThread()
    try:
        with captured_logs(logging.WARNING) as logs:
            loop.run(_read_on(frames), 30, f"the client's reading of {frames!r}")
        no_client_errors(logs)
    finally:
        loop.close()


async def _read_on(frames: list[str | bytes]) -> None:
    events: list[Event] = []
    async with hostile_server() as server:

        async def script(ws: ServerConnection, attempt: int) -> None:
            async with asyncio.timeout(10):  # a request waits for its answer meanwhile
                while not any('"subscribe"' in str(f) for f in server.received):
                    await asyncio.sleep(0.005)
            for frame in frames:
                await ws.send(frame)
            await ws.send("sentinel")

        server.script = script
        client = await open_client(server.url, events)
        waiting = asyncio.create_task(client.subscribe("c0"))
        try:
            await data_until(client, "sentinel")
            assert client.connected and not client.closed, events
        finally:
            await client.close()
            with contextlib.suppress(Exception):
                await waiting
