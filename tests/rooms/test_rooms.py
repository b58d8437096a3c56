"""Rooms on the memory broker: membership, publishing, limits, authorization, presence, cleanup."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from asgi_ws import BackpressureMiddleware, ConfigurationError, PermissionDenied, Rooms, connection_of
from asgi_ws.brokers import MemoryBroker
from asgi_ws.outbound import QueueLimits
from asgi_ws.rooms import PresenceEvent
from asgi_ws.rooms.envelope import decode, encode, message_for, payload_of
from asgi_ws.types import Receive, Scope, Send
from tests.support.asgi import ws_scope
from tests.support.session import Harness


def member_app(rooms: Rooms, joined: asyncio.Event | None = None, room: str = "lobby", **join: Any) -> Any:
    """A session-wrapped endpoint: accept, join ``room``, then echo nothing (members only receive)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await rooms.join(room, scope, **join)
        if joined is not None:
            joined.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return BackpressureMiddleware(app, max_messages=10)


async def members(rooms: Rooms, count: int, **kwargs: Any) -> list[Harness]:
    harnesses = []
    for _ in range(count):
        joined = asyncio.Event()
        harness = Harness(member_app(rooms, joined, **kwargs), ws_scope())
        await harness.start()
        await asyncio.wait_for(joined.wait(), 2)
        harnesses.append(harness)
    return harnesses


async def close_all(harnesses: list[Harness]) -> None:
    for harness in harnesses:
        await harness.__aexit__(None, None, None)


async def test_publish_reaches_every_member_once_in_every_form() -> None:
    async with Rooms() as rooms:
        a, b, c = await members(rooms, 3)
        assert await rooms.publish("lobby", {"text": "hi", "n": 1}) == 3
        await rooms.publish("lobby", "plain text")
        await rooms.publish("lobby", b"\x00\x01binary")
        for ws in (a, b, c):
            assert await ws.next_json() == {"text": "hi", "n": 1}
            assert await ws.next_text() == "plain text"
            assert (await ws.next())["bytes"] == b"\x00\x01binary"
        assert await rooms.publish("empty", "nobody") == 0
        await close_all([a, b, c])


async def test_exclude_skips_the_sender() -> None:
    async with Rooms() as rooms:
        a, b = await members(rooms, 2)
        await rooms.publish("lobby", "from a", exclude=connection_of(a.scope))
        assert await b.next_text() == "from a"
        assert await a.nothing(0.1)
        await close_all([a, b])


async def test_publish_many_and_channel_format() -> None:
    async with Rooms() as rooms:
        (raw,) = await members(rooms, 1, room="news")
        (wrapped,) = await members(rooms, 1, room="sport", format="channel")
        assert await rooms.publish_many(["news", "sport"], {"goal": True}) == 2
        assert await raw.next_json() == {"goal": True}
        assert await wrapped.next_json() == {"channel": "sport", "data": {"goal": True}}
        await rooms.publish("sport", "text")
        assert await wrapped.next_json() == {"channel": "sport", "data": "text"}
        await rooms.publish("sport", b"\xff")
        assert await wrapped.next_json() == {"channel": "sport", "binary": "/w=="}
        await close_all([raw, wrapped])


async def test_one_broker_subscription_per_room_whatever_the_members() -> None:
    broker = MemoryBroker()
    calls: list[str] = []
    original = broker.subscribe

    async def counting(channel: str) -> None:
        calls.append(channel)
        await original(channel)

    broker.subscribe = counting  # type: ignore[method-assign]
    async with Rooms(broker, presence=False) as rooms:
        group = await members(rooms, 20)
        assert calls == ["asgi_ws:lobby"]
        assert await broker.subscription_count() == 1
        await close_all(group)
        await asyncio.sleep(0.05)
        assert await broker.subscription_count() == 0


async def test_a_join_whose_broker_subscribe_fails_leaves_no_member_behind() -> None:
    broker = MemoryBroker()
    original = broker.subscribe
    failures = [ConnectionError("broker down")]

    async def failing_once(channel: str) -> None:
        if channel.endswith(":lobby") and failures:
            raise failures.pop()
        await original(channel)

    broker.subscribe = failing_once  # type: ignore[method-assign]
    async with Rooms(broker) as rooms:
        (ws,) = await members(rooms, 1, room="other")
        conn = connection_of(ws.scope)
        with pytest.raises(ConnectionError):
            await rooms.join("lobby", conn)
        assert rooms.rooms_of(conn) == {"other"} and rooms.local_count("lobby") == 0
        assert [e.member for e in rooms.members("lobby")] == []  # presence took the join back
        await rooms.join("lobby", conn)  # the broker is back: the join works
        assert rooms.rooms_of(conn) == {"other", "lobby"}
        assert await rooms.publish("lobby", "hi") == 1
        assert await ws.next_text() == "hi"
        await close_all([ws])


async def test_a_thousand_join_leave_cycles_leak_nothing() -> None:
    broker = MemoryBroker()
    async with Rooms(broker) as rooms:
        for i in range(1000):
            (ws,) = await members(rooms, 1, room=f"room-{i % 13}")
            await ws.__aexit__(None, None, None)
        await asyncio.sleep(0.05)
        assert rooms._rooms == {} and rooms._members == {} and rooms._by_id == {}
        assert await broker.subscription_count() == 1  # only the presence channel
        assert rooms.members("room-1") == []


async def test_leave_and_leave_all() -> None:
    async with Rooms() as rooms:
        (ws,) = await members(rooms, 1)
        conn = connection_of(ws.scope)
        await rooms.join("second", conn)
        assert rooms.rooms_of(conn) == {"lobby", "second"}
        await rooms.leave("second", conn)
        await rooms.leave("never-joined", conn)
        assert rooms.rooms_of(conn) == {"lobby"}
        await rooms.leave_all(conn)
        assert rooms.rooms_of(conn) == frozenset() and rooms.local_count("lobby") == 0
        await close_all([ws])


async def test_a_slow_member_never_stalls_the_room() -> None:
    async with Rooms() as rooms:
        fast, slow = await members(rooms, 2)
        slow.writable.clear()  # its client stopped reading
        for i in range(50):
            await rooms.publish("lobby", str(i))
        assert [await fast.next_text() for _ in range(50)] == [str(i) for i in range(50)]
        stats = connection_of(slow.scope).outbound.stats()  # type: ignore[union-attr]
        assert stats["queued"] <= 10 and stats["dropped"] > 0  # its own bound (max_messages=10) and policy
        assert rooms.stats.dropped == 0  # drop_oldest accepts each new message
        slow.writable.set()
        await close_all([fast, slow])


async def test_members_without_limits_get_the_default_bounds() -> None:
    rooms = Rooms(default_limits=QueueLimits(max_messages=5, policy="drop_newest"))
    async with rooms:

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            from asgi_ws.connection import attach_session

            scope, conn, receive, send = attach_session(scope, receive, send)
            await receive()
            await send({"type": "websocket.accept"})
            await rooms.join("lobby", conn)
            assert conn.outbound.limits is rooms.default_limits
            await receive()

        async with Harness(app) as ws:
            await asyncio.sleep(0.05)
            assert rooms.local_count("lobby") == 1
            ws.disconnect()


async def test_join_needs_the_connection_shell() -> None:
    async with Rooms() as rooms:
        with pytest.raises(ConfigurationError, match="session middleware"):
            await rooms.join("lobby", ws_scope())
        with pytest.raises(ValueError):
            await rooms.publish("", "x")


async def test_authorize_checks_joins_and_sender_publishes() -> None:
    def authorize(scope: Scope, room: str, action: str) -> bool | str:
        if room.startswith("private") and action == "subscribe":
            return "members only"
        return action != "publish" or room != "readonly"

    async with Rooms(authorize=authorize) as rooms:
        (ws,) = await members(rooms, 1)
        conn = connection_of(ws.scope)
        with pytest.raises(PermissionDenied, match="members only"):
            await rooms.join("private-1", conn)
        with pytest.raises(PermissionDenied, match="forbidden"):
            await rooms.publish("readonly", "x", sender=conn)
        assert await rooms.publish("readonly", "server-side publishes are not checked") == 0
        await close_all([ws])


async def test_presence_lists_members_and_reports_changes() -> None:
    async with Rooms() as rooms:
        events: list[PresenceEvent] = []
        stop = rooms.on_presence(events.append)
        (ws,) = await members(rooms, 1, meta={"name": "alice"})
        (entry,) = rooms.members("lobby")
        assert entry.meta == {"name": "alice"} and entry.node == rooms.node
        await close_all([ws])
        await asyncio.sleep(0.05)
        assert [e.kind for e in events] == ["join", "leave"] and rooms.members("lobby") == []
        stop()


async def test_close_is_final() -> None:
    rooms = Rooms()
    await rooms.start()
    await rooms.close()
    await rooms.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await rooms.start()


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError):
        Rooms(namespace="a:b")
    with pytest.raises(ConfigurationError):
        Rooms(presence_interval=0)


def test_envelope_round_trip_and_member_formats() -> None:
    for data in ({"a": [1, "é"]}, "text ü", b"\x00\xff"):
        kind, payload = payload_of(data)
        assert decode(encode(kind, payload, "node-1", "node-1.7")) == (kind, payload, "node-1", "node-1.7")
    kind, payload = payload_of({"x": 1})
    assert json.loads(message_for("channel", 'we"ird', kind, payload)["text"]) == {
        "channel": 'we"ird',
        "data": {"x": 1},
    }
    assert message_for("raw", "r", *payload_of(b"\x01")) == {"type": "websocket.send", "bytes": b"\x01"}
