"""What arrives from a broker (another node, or garbage) and what app code passes to Rooms:
rejected, counted and logged (rarely), never raised inside the library, never half-applied."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgi_ws import BackpressureMiddleware, PubSubApp, Rooms
from asgi_ws.rooms import PresenceEvent
from asgi_ws.rooms.envelope import EnvelopeError, decode, encode, message_for
from asgi_ws.rooms.presence import MAX_META_DEPTH, PresenceTracker, check_meta
from asgi_ws.types import Receive, Scope, Send
from tests.hardening.strategies import TEXT, VALUES, nested
from tests.rooms.test_rooms import close_all, members
from tests.support.asgi import ws_scope
from tests.support.session import Harness

# -- presence messages from other nodes --------------------------------------------------------

KINDS = st.sampled_from(["h", "q", "x", "b", "j", "l", "st", "zz"])
SHAPES = {
    "n": st.one_of(st.sampled_from(["b", "c", "a"]), VALUES),
    "t": st.one_of(KINDS, VALUES),
    "s": st.one_of(st.integers(-2, 4), st.booleans(), VALUES),
    "r": st.one_of(st.sampled_from(["lobby", "\ud800", ""]), VALUES),
    "m": st.one_of(st.sampled_from(["m1", "m2"]), VALUES),
    "u": st.one_of(st.none(), st.sampled_from(["alice", "\udfff"]), VALUES),
    "x": st.one_of(st.none(), st.just({"name": "n"}), VALUES, st.integers(0, 30).map(nested)),
    "a": st.one_of(st.floats(), st.booleans(), VALUES),
    "to": st.one_of(st.just("a"), VALUES),
    "rooms": st.one_of(
        VALUES,
        st.dictionaries(
            st.one_of(st.just("lobby"), TEXT),
            st.one_of(
                VALUES,
                st.dictionaries(
                    st.one_of(st.just("m1"), TEXT),
                    st.one_of(VALUES, st.tuples(st.one_of(st.none(), TEXT), VALUES, VALUES).map(list)),
                    max_size=3,
                ),
            ),
            max_size=3,
        ),
    ),
}


@st.composite
def presence_messages(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUES)  # not even an object
    keys = draw(st.lists(st.sampled_from(sorted(SHAPES)), max_size=len(SHAPES), unique=True))
    return {key: draw(SHAPES[key]) for key in keys}


def assert_view_is_sound(tracker: PresenceTracker) -> None:
    """Every entry of the view has the types it promises and can be shown to any client."""
    rooms = {room for view in tracker._nodes.values() for room in view.rooms} | set(tracker._local)
    for room in rooms:
        for entry in tracker.members(room):
            assert isinstance(entry.room, str) and entry.room == room and isinstance(entry.member, str)
            assert entry.user is None or isinstance(entry.user, str)
            check_meta(entry.meta)
            assert isinstance(entry.joined_at, (int, float)) and math.isfinite(entry.joined_at)
            for text in (entry.room, entry.member, entry.user or "", entry.node):
                text.encode("utf-8")
    for view in tracker._nodes.values():
        assert all(view.rooms.values()), "an empty room was left in a node's view"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(presence_messages(), max_size=12))
@example([{"t": "j", "n": "b", "s": 1, "r": "lobby", "m": "m1", "x": {"name": "\ud800"}}])
@example([{"t": "j", "n": "b", "s": 1, "r": "lobby", "m": "m1", "a": math.nan}])
@example([{"t": "st", "n": "b", "s": 1, "rooms": {"lobby": {"m1": [None, {"v": math.inf}, 1.0], "m2": [None, {}, 1]}}}])
@example([{"t": "j", "n": "b", "s": True, "r": "lobby", "m": "m1"}])
@example([{"t": ["j"], "n": "b", "s": 1}])
def test_a_peer_may_send_anything(messages: list[Any]) -> None:
    reasons: list[str] = []
    tracker = PresenceTracker("a", 15.0, reasons.append)
    tracker.join("lobby", "a.1", None, {"name": "me"})
    for now, message in enumerate(messages):
        out, events = tracker.receive(message, float(now))
        json.dumps(out, allow_nan=False).encode("utf-8")  # what it answers can be published
        assert all(isinstance(event, PresenceEvent) for event in events)
        assert_view_is_sound(tracker)
    assert tracker.malformed == len(reasons)
    # Whatever came before, a well-formed state from a peer still applies.
    state = {"t": "st", "n": "z", "s": 1, "rooms": {"lobby": {"z.1": ["bob", {"name": "bob"}, 1.0]}}}
    tracker.receive(state, 100.0)
    assert "z.1" in {entry.member for entry in tracker.members("lobby")}


def test_a_malformed_state_entry_is_dropped_alone() -> None:
    tracker = PresenceTracker("a", 15.0)
    rooms = {
        "lobby": {
            "good": ["u", {"k": 1}, 1.0],
            "nan": ["u", {}, math.nan],
            "deep": [None, nested(MAX_META_DEPTH + 1), 1],
        },
        "\ud800": {"x": [None, {}, 1.0]},
        "other": "not members",
    }
    tracker.receive({"t": "st", "n": "b", "s": 3, "rooms": rooms}, 0.0)
    assert [e.member for e in tracker.members("lobby")] == ["good"]
    assert tracker.malformed == 4


def test_a_malformed_change_is_counted_and_applies_nothing() -> None:
    tracker = PresenceTracker("a", 15.0)
    tracker.receive({"t": "st", "n": "b", "s": 0, "rooms": {}}, 0.0)
    bad_join = {"t": "j", "n": "b", "s": 1, "r": "lobby", "m": "m1", "u": 5}
    assert tracker.receive(bad_join, 0.0) == ([], [])
    assert tracker.members("lobby") == [] and tracker.malformed == 1
    good_join = {**bad_join, "u": "bob"}
    assert [e.kind for e in tracker.receive(good_join, 0.0)[1]] == ["join"]


# -- envelopes --------------------------------------------------------------------------------


def assert_deliverable(kind: Any, payload: bytes) -> None:
    for fmt in ("raw", "channel"):
        message = message_for(fmt, "lobby", kind, payload)
        if "text" in message:
            message["text"].encode("utf-8")


@settings(max_examples=500)
@given(st.binary(max_size=64))
@example(encode("json", b'{"a":1}', "node", "node.1")[:9])  # truncated in the ids
@example(encode("text", "é".encode(), "n")[:-1])  # truncated in a character
@example(b"\x01\x00\x00\x05\x00\x00abc")
@example(b"\x01\x01\x00\x00\x00\x00\xff\xfe")  # a text payload that is not UTF-8
@example(b"\x01\x02\x00\x00\x00\x00\xff\xfe")  # a binary payload may be anything
def test_envelope_decode_takes_any_bytes(data: bytes) -> None:
    try:
        kind, payload, node, exclude = decode(data)
    except EnvelopeError:
        return
    assert isinstance(node, str) and isinstance(exclude, str)
    assert_deliverable(kind, payload)


def test_a_truncated_envelope_is_refused_not_delivered_empty() -> None:
    whole = encode("json", b'{"a":1}', "node-1", "node-1.7")
    for cut in range(6 + len("node-1") + len("node-1.7")):
        with pytest.raises(EnvelopeError):
            decode(whole[:cut])


async def test_garbage_from_the_broker_is_counted_logged_once_and_harms_no_member(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_ws")
    async with Rooms() as rooms:
        (member,) = await members(rooms, 1)
        garbage = [b"", b"\x01", encode("json", b"{}", "other")[:8], b"\x01\x00\x00\x00\x00\x00\xff", b"\x09" * 10]
        presence = [
            b"[" * 100_000,
            b"\xff",
            b"[]",
            b'{"t":"j","n":"z","s":1,"r":5}',
            b'{"t":"st","n":"z","s":1,"rooms":[]}',
        ]
        for _ in range(20):
            for payload in garbage:
                rooms._on_broker_message("asgi_ws:lobby", payload)
            for payload in presence:
                rooms._on_broker_message("asgi_ws!presence", payload)
        assert rooms.stats.malformed == 20 * (len(garbage) + len(presence))
        logged = [r for r in caplog.records if r.name == "asgi_ws.rooms" and "malformed" in r.getMessage()]
        assert len(logged) == 1 and logged[0].levelno == logging.WARNING
        assert await member.nothing(0.05)  # nothing, not an empty message
        await rooms.publish("lobby", "still works")
        assert await member.next_text() == "still works"
        await close_all([member])


# -- what app code passes --------------------------------------------------------------------


async def idle_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then wait for the end: the test joins the connection to rooms itself."""
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


@pytest.mark.parametrize(
    "data",
    ["\ud800", {"text": "a\udfffb"}, {"\ud800": 1}, [math.nan], {"x": math.inf}, nested(5000)],
    ids=["str", "nested-str", "key", "nan", "inf", "deep"],
)
async def test_publishing_unsendable_data_raises_to_the_app_before_anything_is_sent(data: Any) -> None:
    async with Rooms() as rooms:
        (member,) = await members(rooms, 1)
        with pytest.raises(ValueError, match="published data"):
            await rooms.publish("lobby", data)
        assert rooms.stats.published == 0
        assert await member.nothing(0.05)
        await close_all([member])


@pytest.mark.parametrize(
    "meta",
    [{"name": "\ud800"}, {"\udc00": 1}, {"n": math.nan}, nested(MAX_META_DEPTH + 1), {"s": {1, 2}}, ["not", "a dict"]],
    ids=["value", "key", "nan", "deep", "set", "list"],
)
async def test_joining_with_unsendable_meta_raises_at_the_join(meta: Any) -> None:
    async with Rooms() as rooms, Harness(BackpressureMiddleware(idle_app)) as ws:
        with pytest.raises(ValueError, match="meta"):
            await rooms.join("lobby", ws.scope, meta=meta)
        assert rooms.members("lobby") == [] and rooms.rooms_of(ws.scope) == frozenset()
        for name in ("\ud800", "", "x" * 201):
            with pytest.raises(ValueError, match="room names"):
                await rooms.publish(name, 1)


async def test_one_failing_presence_watcher_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asgi_ws")
    app = PubSubApp()
    seen: list[PresenceEvent] = []

    def broken(event: PresenceEvent) -> None:
        raise RuntimeError("a watcher's bug")

    app.rooms.on_presence(broken)  # called before PubSubApp's own callback
    app.rooms.on_presence(seen.append)
    async with Harness(app) as a, Harness(app) as b, Harness(app) as c, Harness(app) as d:
        for ws in (a, b, c):
            ws.send_json({"$ws": "subscribe", "channel": "room", "presence": True})
            assert (await ws.next_json())["$ws"] == "subscribed"
        await a.next_json(), await a.next_json(), await b.next_json()  # the joins of b and c
        b.closed = {"type": "websocket.close"}  # b's socket now raises on every send
        d.send_json({"$ws": "subscribe", "channel": "room", "meta": {"name": "dan"}})
        assert (await d.next_json())["$ws"] == "subscribed"
        for ws in (a, c):
            diff = await ws.next_json()
            assert diff["$ws"] == "presence_diff" and diff["join"]["meta"] == {"name": "dan"}
        assert [e.kind for e in seen] == ["join"] * 4
    assert sum("presence callback failed" in r.getMessage() for r in caplog.records) >= 4
    await app.rooms.close()


async def test_a_user_identity_that_is_not_text_is_refused_at_the_join() -> None:
    class Backend:  # an auth backend's user whose identity decoded a lone surrogate escape
        is_authenticated = True
        identity = "mallory\ud800"

    scope = ws_scope()
    scope["user"] = Backend()
    async with Rooms() as rooms, Harness(BackpressureMiddleware(idle_app), scope) as ws:
        with pytest.raises(ValueError, match="user identity"):
            await rooms.join("lobby", ws.scope)
        assert rooms.members("lobby") == []
