"""Who is in which room, across every process, kept over the broker's plain pub/sub.

Each process (a *node*) announces its own members' joins and leaves on one presence channel,
numbered with a per-node sequence, and a periodic *beat* carrying its latest number. Every
node keeps a view of the others. A gap in a node's numbers (pub/sub may lose messages during
a broker outage), a beat with a number it has not seen, or an unknown node makes it ask that
node for its full *state*, which replaces the view. A node that stops beating for ``ttl``
seconds (its process died) is forgotten, with a leave event for each of its members. This is
the scheme of Phoenix's tracker, and it needs nothing of the broker but pub/sub, so it works
the same on every broker. A node that closes cleanly says goodbye and is forgotten at once.

:class:`PresenceTracker` is sans-I/O: it is given messages and the time, and returns the
messages to publish and the events to report; :class:`~asgi_ws.rooms.Rooms` does the I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Outgoing = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One member of one room, as every process sees it.

    Attributes:
        room: the room.
        member: the member's id (unique in the cluster).
        user: the identity of the member's user (``scope["user"].identity``), or None.
        meta: what was given to ``join(..., meta=...)``.
        node: the process holding the connection.
        joined_at: wall-clock time of the join.
    """

    room: str
    member: str
    user: str | None
    meta: dict[str, Any]
    node: str
    joined_at: float


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A member appeared in (``join``) or disappeared from (``leave``) a room."""

    kind: Literal["join", "leave"]
    entry: PresenceEntry


@dataclass
class _NodeView:
    seq: int = 0
    last_seen: float = 0.0
    stale: bool = True
    asked_at: float = float("-inf")
    rooms: dict[str, dict[str, PresenceEntry]] = field(default_factory=dict)

    def entries(self) -> list[PresenceEntry]:
        return [entry for members in self.rooms.values() for entry in members.values()]


class PresenceTracker:
    """The cluster-wide presence view of one node.

    Args:
        node: this node's id.
        ttl: seconds without a message from a node before it is considered dead.
    """

    def __init__(self, node: str, ttl: float) -> None:
        self.node = node
        self.ttl = ttl
        self._seq = 0
        self._local: dict[str, dict[str, PresenceEntry]] = {}
        self._nodes: dict[str, _NodeView] = {}

    # -- queries -------------------------------------------------------------------

    def members(self, room: str) -> list[PresenceEntry]:
        """Every member of ``room`` on every node this node knows."""
        found = list(self._local.get(room, {}).values())
        for view in self._nodes.values():
            found += view.rooms.get(room, {}).values()
        return found

    def nodes(self) -> list[str]:
        """The other nodes currently known alive."""
        return list(self._nodes)

    # -- this node's changes ---------------------------------------------------------

    def hello(self) -> Outgoing:
        """What a node publishes when it starts: others answer with their state."""
        return [{"t": "h", "n": self.node}]

    def join(self, room: str, member: str, user: str | None, meta: dict[str, Any]) -> tuple[Outgoing, PresenceEvent]:
        entry = PresenceEntry(room, member, user, meta, self.node, time.time())
        self._local.setdefault(room, {})[member] = entry
        self._seq += 1
        message = {"t": "j", "n": self.node, "s": self._seq, "r": room, "m": member, "u": user, "x": meta,
                   "a": entry.joined_at}  # fmt: skip
        return [message], PresenceEvent("join", entry)

    def leave(self, room: str, member: str) -> tuple[Outgoing, PresenceEvent | None]:
        members = self._local.get(room)
        entry = members.pop(member, None) if members else None
        if entry is None:
            return [], None
        if not members:
            del self._local[room]
        self._seq += 1
        return [{"t": "l", "n": self.node, "s": self._seq, "r": room, "m": member}], PresenceEvent("leave", entry)

    def beat(self, now: float) -> tuple[Outgoing, list[PresenceEvent]]:
        """Called every beat interval: this node's beat, and the leaves of nodes gone silent."""
        events: list[PresenceEvent] = []
        for node, view in list(self._nodes.items()):
            if now - view.last_seen > self.ttl:
                del self._nodes[node]
                events += [PresenceEvent("leave", entry) for entry in view.entries()]
        return [{"t": "b", "n": self.node, "s": self._seq}], events

    def state(self) -> dict[str, Any]:
        rooms = {
            room: {m: [e.user, e.meta, e.joined_at] for m, e in members.items()}
            for room, members in self._local.items()
        }
        return {"t": "st", "n": self.node, "s": self._seq, "rooms": rooms}

    # -- other nodes' messages ---------------------------------------------------------

    def receive(self, message: dict[str, Any], now: float) -> tuple[Outgoing, list[PresenceEvent]]:
        """Apply a message from the presence channel; return what to publish and what happened."""
        node = message.get("n")
        kind = message.get("t")
        if not isinstance(node, str) or node == self.node:
            return [], []  # our own echo, or garbage
        if kind == "h":
            return [self.state()], []
        if kind == "q":
            return ([self.state()] if message.get("to") == self.node else []), []
        if kind == "x":  # a node closing: its members leave now, not after the ttl
            gone = self._nodes.pop(node, None)
            return [], [PresenceEvent("leave", entry) for entry in gone.entries()] if gone else []
        view = self._nodes.get(node)
        if view is None:
            view = self._nodes[node] = _NodeView()
        view.last_seen = now
        if kind == "st":
            return [], self._replace(view, node, message)
        seq = message.get("s")
        if not isinstance(seq, int):
            return [], []
        if kind in ("j", "l") and not view.stale and seq == view.seq + 1:
            view.seq = seq
            return [], self._apply(view, node, message)
        if kind == "b" and not view.stale and seq == view.seq:
            return [], []
        if seq <= view.seq and not view.stale:
            return [], []  # an old, duplicated message
        view.stale = True  # a gap, an unknown node, or news we missed: ask for the full state,
        if now - view.asked_at < self.ttl / 3:  # unless a request is already out and recent
            return [], []
        view.asked_at = now
        return [{"t": "q", "n": self.node, "to": node}], []

    def _apply(self, view: _NodeView, node: str, message: dict[str, Any]) -> list[PresenceEvent]:
        room, member = message.get("r"), message.get("m")
        if not isinstance(room, str) or not isinstance(member, str):
            return []
        members = view.rooms.setdefault(room, {})
        if message["t"] == "j":
            user, meta, joined_at = message.get("u"), message.get("x") or {}, message.get("a") or 0.0
            entry = members[member] = PresenceEntry(room, member, user, meta, node, joined_at)
            return [PresenceEvent("join", entry)]
        gone: PresenceEntry | None = members.pop(member, None)
        if not members:
            del view.rooms[room]
        return [PresenceEvent("leave", gone)] if gone else []

    def _replace(self, view: _NodeView, node: str, message: dict[str, Any]) -> list[PresenceEvent]:
        seq, rooms = message.get("s"), message.get("rooms")
        if not isinstance(seq, int) or not isinstance(rooms, dict) or (seq < view.seq and not view.stale):
            return []
        new: dict[str, dict[str, PresenceEntry]] = {}
        for room, members in rooms.items():
            if isinstance(members, dict):
                new[room] = {
                    m: PresenceEntry(room, m, v[0], v[1] or {}, node, v[2])
                    for m, v in members.items()
                    if isinstance(v, list) and len(v) == 3
                }
        old = {(e.room, e.member): e for e in view.entries()}
        now_entries = {(room, m): e for room, members in new.items() for m, e in members.items()}
        events = [PresenceEvent("leave", e) for key, e in old.items() if key not in now_entries]
        events += [PresenceEvent("join", e) for key, e in now_entries.items() if key not in old]
        view.rooms, view.seq, view.stale = new, seq, False
        view.asked_at = float("-inf")  # answered: the next gap may ask again at once
        return events


__all__ = ["PresenceEntry", "PresenceEvent", "PresenceTracker"]
