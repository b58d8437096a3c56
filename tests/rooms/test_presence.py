"""The presence tracker, sans-I/O: nodes exchange messages through a test-controlled bus."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ws.rooms.presence import PresenceEvent, PresenceTracker


class Bus:
    """Delivers every published message to every node (its own included, as brokers do)."""

    def __init__(self, *names: str, ttl: float = 15.0) -> None:
        self.nodes = {name: PresenceTracker(name, ttl) for name in names}
        self.events: dict[str, list[PresenceEvent]] = {name: [] for name in names}
        self.now = 0.0
        self.dropped = False  # when True, published messages are lost (a broker outage)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        pending = [json.loads(json.dumps(m)) for m in messages]  # as bytes on a wire
        while pending:
            message = pending.pop(0)
            if self.dropped:
                continue
            for name, node in self.nodes.items():
                out, events = node.receive(message, self.now)
                self.events[name] += events
                pending += out

    def join(self, node: str, room: str, member: str, user: str | None = None, flush: bool = True) -> None:
        out, event = self.nodes[node].join(room, member, user, {"name": member})
        self.events[node].append(event)
        self.publish(out)
        if flush:
            self.flush(node)

    def leave(self, node: str, room: str, member: str, flush: bool = True) -> None:
        out, event = self.nodes[node].leave(room, member)
        if event:
            self.events[node].append(event)
        self.publish(out)
        if flush:
            self.flush(node)

    def flush(self, node: str) -> list[dict[str, Any]]:
        messages = self.nodes[node].flush()
        self.publish(messages)
        return messages

    def beat(self, now: float) -> None:
        self.now = now
        for name, node in self.nodes.items():
            out, events = node.beat(now)
            self.events[name] += events
            self.publish(out)


def names(tracker: PresenceTracker, room: str) -> list[str]:
    return sorted(e.member for e in tracker.members(room))


def test_joins_and_leaves_reach_every_node() -> None:
    bus = Bus("a", "b", "c")
    bus.join("a", "lobby", "alice", user="u1")
    bus.join("b", "lobby", "bob")
    bus.join("c", "other", "carol")
    for node in bus.nodes.values():
        assert names(node, "lobby") == ["alice", "bob"] and names(node, "other") == ["carol"]
    entry = next(e for e in bus.nodes["c"].members("lobby") if e.member == "alice")
    assert (entry.user, entry.meta, entry.node) == ("u1", {"name": "alice"}, "a")
    bus.leave("a", "lobby", "alice")
    assert all(names(node, "lobby") == ["bob"] for node in bus.nodes.values())
    kinds = [(e.kind, e.entry.member) for e in bus.events["c"]]
    assert ("join", "alice") in kinds and ("leave", "alice") in kinds


def test_a_lost_message_is_noticed_and_repaired_by_a_state_sync() -> None:
    bus = Bus("a", "b")
    bus.join("a", "lobby", "alice")
    bus.dropped = True
    bus.join("a", "lobby", "ann")  # lost on the way to b
    bus.dropped = False
    assert names(bus.nodes["b"], "lobby") == ["alice"]
    bus.join("a", "lobby", "amy")  # b sees a gap in a's numbers and asks a for its state
    assert names(bus.nodes["b"], "lobby") == ["alice", "amy", "ann"]


def test_a_missed_leave_is_repaired_by_the_next_beat() -> None:
    bus = Bus("a", "b")
    bus.join("a", "lobby", "alice")
    bus.dropped = True
    bus.leave("a", "lobby", "alice")
    bus.dropped = False
    assert names(bus.nodes["b"], "lobby") == ["alice"]
    bus.beat(1.0)  # a's beat carries a number b has not seen: b resyncs
    assert names(bus.nodes["b"], "lobby") == []


def test_a_new_node_learns_the_state_of_the_others() -> None:
    bus = Bus("a")
    bus.join("a", "lobby", "alice")
    bus.nodes["late"] = PresenceTracker("late", 15.0)
    bus.events["late"] = []
    bus.publish(bus.nodes["late"].hello())
    assert names(bus.nodes["late"], "lobby") == ["alice"]
    assert [e.kind for e in bus.events["late"]] == ["join"]


def test_a_silent_node_is_forgotten_after_the_ttl() -> None:
    bus = Bus("a", "b", ttl=15.0)
    bus.join("a", "lobby", "alice")
    bus.join("b", "lobby", "bob")
    b = bus.nodes.pop("b")  # b's process dies: it never beats again
    bus.beat(10.0)
    assert names(bus.nodes["a"], "lobby") == ["alice", "bob"]
    bus.beat(16.0)
    assert names(bus.nodes["a"], "lobby") == ["alice"]
    assert ("leave", "bob") in [(e.kind, e.entry.member) for e in bus.events["a"]]
    assert names(b, "lobby") == ["alice", "bob"]  # (the dead node's own view is irrelevant)


def test_a_node_saying_goodbye_is_forgotten_at_once() -> None:
    bus = Bus("a", "b")
    bus.join("b", "lobby", "bob")
    bus.publish([{"t": "x", "n": "b"}])
    assert names(bus.nodes["a"], "lobby") == []


def test_own_echo_duplicates_and_garbage_change_nothing() -> None:
    bus = Bus("a", "b")
    bus.join("a", "lobby", "alice")
    b = bus.nodes["b"]
    before = names(b, "lobby")
    for junk in [{}, {"n": 5}, {"t": "j", "n": "a"}, {"t": "j", "n": "a", "s": "x"}, {"t": "st", "n": "a", "s": 0}]:
        assert b.receive(junk, 0.0)[1] == []
    assert b.receive({"t": "j", "n": "a", "s": 1, "r": "lobby", "m": "alice"}, 0.0) == ([], [])  # duplicate
    assert b.receive({"t": "j", "n": "b", "s": 99, "r": "x", "m": "y"}, 0.0) == ([], [])  # own echo
    assert names(b, "lobby") == before


def test_changes_are_published_per_room_at_the_flush_the_latest_change_of_a_member_winning() -> None:
    bus = Bus("a", "b")
    for i in range(2500):
        bus.join("a", "lobby", f"m{i}", flush=False)
    bus.join("a", "other", "x", flush=False)
    bus.join("a", "other", "y", flush=False)
    bus.leave("a", "other", "y", flush=False)  # joined and left within one flush: a leave
    assert names(bus.nodes["b"], "lobby") == []  # nothing published before the flush
    assert len(names(bus.nodes["a"], "lobby")) == 2500  # but the node's own view has them at once
    messages = bus.flush("a")
    # One message per room and per MAX_DELTA_MEMBERS changed members, numbered in order.
    assert [(m["t"], m["r"], len(m.get("j", {})), m.get("l", [])) for m in messages] == [
        ("d", "lobby", 1000, []), ("d", "lobby", 1000, []), ("d", "lobby", 500, []), ("d", "other", 1, ["y"])
    ]  # fmt: skip
    assert [m["s"] for m in messages] == [1, 2, 3, 4]
    assert len(names(bus.nodes["b"], "lobby")) == 2500 and names(bus.nodes["b"], "other") == ["x"]
    assert sum(e.kind == "join" for e in bus.events["b"]) == 2501  # one event per member, not per message
    assert bus.nodes["a"].flush() == [] and not bus.nodes["a"].pending
    for i in range(0, 2500, 2):
        bus.leave("a", "lobby", f"m{i}", flush=False)
    bus.flush("a")
    assert len(names(bus.nodes["b"], "lobby")) == 1250
    assert sum(e.kind == "leave" for e in bus.events["b"]) == 1250


def test_a_delta_already_applied_by_a_state_is_no_news_and_a_malformed_one_changes_nothing() -> None:
    bus = Bus("a", "b")
    bus.join("a", "lobby", "alice", flush=False)
    bus.publish([bus.nodes["a"].state()])  # a state ahead of the delta (a late node's hello)
    assert [e.kind for e in bus.events["b"]] == ["join"]
    bus.flush("a")
    assert [e.kind for e in bus.events["b"]] == ["join"]  # applied again, told once
    b = bus.nodes["b"]
    for junk in [
        {"t": "d", "n": "a", "s": 2, "r": 5},
        {"t": "d", "n": "a", "s": 2, "r": "lobby", "j": []},
        {"t": "d", "n": "a", "s": 2, "r": "lobby", "j": {"m": [None, {}, "x"]}},
        {"t": "d", "n": "a", "s": 2, "r": "lobby", "l": ["alice", 7]},
    ]:
        assert b.receive(junk, 0.0) == ([], [])
    assert names(b, "lobby") == ["alice"] and b.malformed == 4


def test_nodes_publishing_one_message_per_change_are_still_understood() -> None:
    b = PresenceTracker("b", 15.0)
    b.receive({"t": "st", "n": "old", "s": 0, "rooms": {}}, 0.0)
    assert b.receive({"t": "j", "n": "old", "s": 1, "r": "lobby", "m": "m1", "u": None, "x": {}, "a": 1.0}, 0.0)[1]
    assert names(b, "lobby") == ["m1"]
    assert b.receive({"t": "l", "n": "old", "s": 2, "r": "lobby", "m": "m1"}, 0.0)[1]
    assert names(b, "lobby") == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["r1", "r2"]),
                          st.sampled_from(["m1", "m2", "m3"]), st.booleans(), st.booleans()), max_size=40))  # fmt: skip
def test_after_any_history_with_losses_one_beat_makes_every_view_exact(
    steps: list[tuple[str, str, str, bool, bool]],
) -> None:
    bus = Bus("a", "b", "c")
    for i, (node, room, member, joining, lost) in enumerate(steps):
        bus.dropped = lost
        member_id = f"{node}-{member}"
        (bus.join if joining else bus.leave)(node, room, member_id, flush=i % 3 == 0)  # some changes gather
    bus.dropped = False
    for node in bus.nodes:
        bus.flush(node)
    bus.beat(1.0)
    truth = {room: sorted(e.member for n in bus.nodes.values() for e in n._local.get(room, {}).values())
             for room in ("r1", "r2")}  # fmt: skip
    for node in bus.nodes.values():
        assert {room: names(node, room) for room in ("r1", "r2")} == truth
