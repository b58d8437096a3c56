"""Who is in which room, across every process, kept over the broker's plain pub/sub.

Each process (a *node*) announces its own members' joins and leaves on one presence channel,
numbered with a per-node sequence, and a periodic *beat* carrying its latest number. Changes
are not published one by one: they gather per room (the latest change of each member wins)
until :meth:`PresenceTracker.flush`, which makes one *delta* message per room (``"t": "d"``,
its joins and its leaves; a room with more than :data:`MAX_DELTA_MEMBERS` changed members
takes several). A reconnect storm of thousands of joins is then a few messages per flush, not
a message per join. Every
node keeps a view of the others. A gap in a node's numbers (pub/sub may lose messages during
a broker outage), a beat with a number it has not seen, or an unknown node makes it ask that
node for its full *state*, which replaces the view. A node that stops beating for ``ttl``
seconds (its process died) is forgotten, with a leave event for each of its members. This is
the scheme of Phoenix's tracker, and it needs nothing of the broker but pub/sub, so it works
the same on every broker. A node that closes cleanly says goodbye and is forgotten at once.

Every field of another node's message is checked before it is used: a message (or a state
entry) of the wrong shape is ignored and counted, never raised over, never half-applied.

:class:`PresenceTracker` is sans-I/O: it is given messages and the time, and returns the
messages to publish and the events to report; :class:`~asgi_ws.rooms.Rooms` does the I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from ..protocol import ProtocolError, check_value, is_text

Outgoing = list[dict[str, Any]]
_Result = tuple[Outgoing, list["PresenceEvent"]]

#: Members changed in one delta message at most; a room with more changes in one flush takes several.
MAX_DELTA_MEMBERS = 1000

#: Deepest nesting of a member's ``meta`` (the dict itself is level 1). Presence frames carry
#: it at most three levels down, so they stay within the control protocol's ``MAX_DEPTH``.
MAX_META_DEPTH = 16


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
        on_malformed: called with a reason for every message or state entry ignored as
            malformed (also counted in :attr:`malformed`).
    """

    def __init__(self, node: str, ttl: float, on_malformed: Callable[[str], object] | None = None) -> None:
        self.node = node
        self.ttl = ttl
        #: Messages and state entries of other nodes ignored because of their shape.
        self.malformed = 0
        self._on_malformed = on_malformed
        self._seq = 0
        self._local: dict[str, dict[str, PresenceEntry]] = {}
        self._nodes: dict[str, _NodeView] = {}
        #: This node's changes not published yet: room -> member -> its entry (joined) or None (left).
        self._pending: dict[str, dict[str, PresenceEntry | None]] = {}

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
        """A member of this node joins ``room``: part of this node's view at once, published at
        the next :meth:`flush` (the returned messages are empty; kept for the call's shape)."""
        entry = PresenceEntry(room, member, user, meta, self.node, time.time())
        self._local.setdefault(room, {})[member] = entry
        self._pending.setdefault(room, {})[member] = entry
        return [], PresenceEvent("join", entry)

    def leave(self, room: str, member: str) -> tuple[Outgoing, PresenceEvent | None]:
        """A member of this node leaves ``room``; published at the next :meth:`flush`."""
        members = self._local.get(room)
        entry = members.pop(member, None) if members else None
        if entry is None:
            return [], None
        if not members:
            del self._local[room]
        self._pending.setdefault(room, {})[member] = None
        return [], PresenceEvent("leave", entry)

    @property
    def pending(self) -> bool:
        """True while this node has changes that :meth:`flush` has not published yet."""
        return bool(self._pending)

    def flush(self) -> Outgoing:
        """The delta messages of the changes since the last flush: one per room (per
        :data:`MAX_DELTA_MEMBERS` changed members), each numbered; the latest change of a
        member wins (a join then a leave in one flush is a leave)."""
        pending, self._pending = self._pending, {}
        messages: Outgoing = []
        for room, changes in pending.items():
            items = list(changes.items())
            for start in range(0, len(items), MAX_DELTA_MEMBERS):
                self._seq += 1
                message: dict[str, Any] = {"t": "d", "n": self.node, "s": self._seq, "r": room}
                joins = {m: [e.user, e.meta, e.joined_at] for m, e in items[start : start + MAX_DELTA_MEMBERS] if e}
                leaves = [m for m, e in items[start : start + MAX_DELTA_MEMBERS] if e is None]
                if joins:
                    message["j"] = joins
                if leaves:
                    message["l"] = leaves
                messages.append(message)
        return messages

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

    def receive(self, message: Any, now: float) -> _Result:
        """Apply a message from the presence channel; return what to publish and what happened.

        Never raises: a message with a missing or mistyped field is ignored (counted in
        :attr:`malformed`) before anything of it is applied.
        """
        if not isinstance(message, dict):
            return self._reject("a message is not an object")
        node, kind = message.get("n"), message.get("t")
        if not _is_name(node):
            return self._reject('"n" is not a node id')
        if node == self.node:
            return [], []  # our own echo
        if kind == "h":
            return [self.state()], []
        if kind == "q":
            return ([self.state()] if message.get("to") == self.node else []), []
        if kind == "x":  # a node closing: its members leave now, not after the ttl
            gone = self._nodes.pop(node, None)
            return [], [PresenceEvent("leave", entry) for entry in gone.entries()] if gone else []
        if not isinstance(kind, str) or kind not in _NUMBERED:
            return self._reject('"t" is not a known kind')
        seq = message.get("s")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            return self._reject('"s" is not a sequence number')
        rooms = message.get("rooms") if kind == "st" else None
        if kind == "st" and not isinstance(rooms, dict):
            return self._reject('"rooms" is not an object')
        change: PresenceEntry | _Delta | str | None = None
        if kind in ("j", "l"):  # one change: what nodes before deltas publish
            change = _change(kind, node, message)
        elif kind == "d":
            change = _delta(node, message)
        if isinstance(change, str):
            return self._reject(change)
        view = self._nodes.get(node)
        if view is None:
            view = self._nodes[node] = _NodeView()
        view.last_seen = now
        if rooms is not None:
            return [], self._replace(view, node, seq, rooms)
        if change is not None and not view.stale and seq == view.seq + 1:
            view.seq = seq
            return [], self._apply(view, kind, change)
        if kind == "b" and not view.stale and seq == view.seq:
            return [], []
        if seq <= view.seq and not view.stale:
            return [], []  # an old, duplicated message
        view.stale = True  # a gap, an unknown node, or news we missed: ask for the full state,
        if now - view.asked_at < self.ttl / 3:  # unless a request is already out and recent
            return [], []
        view.asked_at = now
        return [{"t": "q", "n": self.node, "to": node}], []

    def _reject(self, reason: str) -> _Result:
        self.malformed += 1
        if self._on_malformed is not None:
            self._on_malformed(reason)
        return [], []

    def _apply(self, view: _NodeView, kind: str, entry: PresenceEntry | _Delta) -> list[PresenceEvent]:
        if isinstance(entry, _Delta):
            return self._apply_delta(view, entry)
        if kind == "j":
            view.rooms.setdefault(entry.room, {})[entry.member] = entry
            return [PresenceEvent("join", entry)]
        members = view.rooms.get(entry.room)
        gone = members.pop(entry.member, None) if members is not None else None
        if members is not None and not members:
            del view.rooms[entry.room]
        return [PresenceEvent("leave", gone)] if gone else []

    def _apply_delta(self, view: _NodeView, delta: _Delta) -> list[PresenceEvent]:
        """A delta's joins and leaves; events only for what changed (a join already known, from
        a state that ran ahead of the delta, is no news)."""
        members = view.rooms.setdefault(delta.room, {})
        events: list[PresenceEvent] = []
        for member in delta.leaves:
            gone = members.pop(member, None)
            if gone is not None:
                events.append(PresenceEvent("leave", gone))
        for member, entry in delta.joins.items():
            known = members.get(member)
            members[member] = entry
            if known is None:
                events.append(PresenceEvent("join", entry))
        if not members:
            del view.rooms[delta.room]
        return events

    def _replace(self, view: _NodeView, node: str, seq: int, rooms: dict[Any, Any]) -> list[PresenceEvent]:
        if seq < view.seq and not view.stale:
            return []
        new: dict[str, dict[str, PresenceEntry]] = {}
        for room, members in rooms.items():
            if not _is_name(room) or not isinstance(members, dict):
                self._reject("a room of a state is malformed")
                continue
            for member, fields in members.items():
                entry = _state_entry(room, member, fields, node)
                if entry is None:
                    self._reject("a member of a state is malformed")
                else:
                    new.setdefault(room, {})[member] = entry
        old = {(e.room, e.member): e for e in view.entries()}
        now_entries = {(room, m): e for room, members in new.items() for m, e in members.items()}
        events = [PresenceEvent("leave", e) for key, e in old.items() if key not in now_entries]
        events += [PresenceEvent("join", e) for key, e in now_entries.items() if key not in old]
        view.rooms, view.seq, view.stale = new, seq, False
        view.asked_at = float("-inf")  # answered: the next gap may ask again at once
        return events


#: Kinds of numbered messages (with ``"s"``); ``h``, ``q`` and ``x`` are not numbered.
_NUMBERED = frozenset({"b", "d", "j", "l", "st"})


@dataclass(frozen=True, slots=True)
class _Delta:
    """The checked content of a delta message: one room's joins and leaves."""

    room: str
    joins: dict[str, PresenceEntry]
    leaves: list[str]


def _delta(node: str, message: dict[str, Any]) -> _Delta | str:
    """The joins and leaves of a delta (``d``) message, or why it is malformed (then none applies)."""
    room, joined, left = message.get("r"), message.get("j", {}), message.get("l", [])
    if not _is_name(room):
        return '"r" of a delta is not a name'
    if not isinstance(joined, dict) or not isinstance(left, list):
        return '"j" or "l" of a delta is malformed'
    joins: dict[str, PresenceEntry] = {}
    for member, fields in joined.items():
        entry = _state_entry(room, member, fields, node)
        if entry is None:
            return "a join of a delta is malformed"
        joins[member] = entry
    if not all(_is_name(member) for member in left):
        return "a leave of a delta is malformed"
    return _Delta(room, joins, left)


def check_meta(meta: Any) -> None:
    """Raise :class:`~asgi_ws.ProtocolError` (a ValueError) unless ``meta`` can be shown to
    every client: a dict of JSON with string keys, no lone surrogate, finite numbers,
    nested at most :data:`MAX_META_DEPTH` deep."""
    if not isinstance(meta, dict):
        raise ProtocolError("bad_field", "meta must be an object")
    check_value(meta, max_depth=MAX_META_DEPTH)


def _is_name(value: Any) -> TypeGuard[str]:
    return is_text(value) and value != ""


def _is_user(value: Any) -> bool:
    return value is None or is_text(value)


def _is_meta(value: Any) -> bool:
    try:
        check_meta(value)
    except ProtocolError:
        return False
    return True


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _change(kind: str, node: str, message: dict[str, Any]) -> PresenceEntry | str:
    """The entry a join (``j``) or leave (``l``) is about, or why the message is malformed."""
    room, member = message.get("r"), message.get("m")
    if not _is_name(room) or not _is_name(member):
        return '"r" or "m" is not a name'
    if kind == "l":  # a leave names the room and the member only
        return PresenceEntry(room, member, None, {}, node, 0.0)
    user, meta, joined_at = message.get("u"), message.get("x"), message.get("a")
    meta = {} if meta is None else meta
    joined_at = 0.0 if joined_at is None else joined_at
    if not _is_user(user) or not _is_meta(meta) or not _is_time(joined_at):
        return '"u", "x" or "a" of a join is malformed'
    return PresenceEntry(room, member, user, meta, node, joined_at)


def _state_entry(room: str, member: Any, fields: Any, node: str) -> PresenceEntry | None:
    """A member of a ``st`` message (``{member: [user, meta, joined_at]}``), or None when malformed."""
    if not _is_name(member) or not isinstance(fields, list) or len(fields) != 3:
        return None
    user, meta, joined_at = fields
    meta = {} if meta is None else meta
    if not _is_user(user) or not _is_meta(meta) or not _is_time(joined_at):
        return None
    return PresenceEntry(room, member, user, meta, node, joined_at)


__all__ = ["MAX_DELTA_MEMBERS", "MAX_META_DEPTH", "PresenceEntry", "PresenceEvent", "PresenceTracker", "check_meta"]
