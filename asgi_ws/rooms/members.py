"""What Rooms keeps per room and per member of this process, and how a member is found.

A member is a connection (a Starlette/FastAPI WebSocket, a Channels consumer, a scope or an
asgi_ws :class:`~asgi_ws.Connection`, all found through :func:`connection`), with its
memberships; a room keeps its members' delivery sinks grouped by format, and its server-side
subscriptions (:mod:`asgi_ws.rooms.subscription`) as one more group, ``"value"``, rebuilt only
when membership changes, so that the fan-out loop reads one tuple per format.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..brokers.base import position_key
from ..connection import Connection, connection_of
from ..delivery import Membership
from ..exceptions import ConfigurationError
from ..protocol import is_text
from .envelope import Format, Kind

if TYPE_CHECKING:
    from .subscription import Subscription

MAX_ROOM_LENGTH = 200
_FORMATS: tuple[Format, ...] = ("raw", "channel")


@dataclass(slots=True)
class RoomsStats:
    """Counters of one Rooms instance (read them, or export them with ``asgi_ws.metrics``)."""

    published: int = 0
    delivered: int = 0
    dropped: int = 0  # offers refused: a member's (or subscription's) policy dropped or closed, or it was gone
    received: int = 0  # messages from other processes
    malformed: int = 0  # broker messages (or presence state entries) not of this library's shape: ignored
    broker_disconnects: int = 0
    broker_lost_seconds: float = 0.0
    history_requests: int = 0  # what resumes and after= subscriptions asked of the broker's history
    history_reads: int = 0  # broker reads that answered them (coalesced per room: asgi_ws.rooms.replay)


class Member:
    __slots__ = ("conn", "deliver", "id", "rooms", "sink", "user")

    def __init__(self, conn: Connection, member_id: str, user: str | None) -> None:
        self.conn = conn
        self.id = member_id
        self.user = user
        self.rooms: dict[str, Membership] = {}
        self.sink = conn.sink
        #: One bound method, kept: the fan-out loop calls it (and ``exclude`` compares it).
        self.deliver = self.sink.deliver


class Room:
    __slots__ = (
        "_snapshot",
        "channel",
        "last",
        "lock",
        "members",
        "name",
        "recent",
        "subs",
        "subscribed",
        "watchers",
    )

    def __init__(self, name: str, channel: str) -> None:
        self.name = name
        self.channel = channel
        #: With history: the position after which every message reaches the members (the last
        #: fanned out, or the newest when the subscription was made).
        self.last: str | None = None
        #: With history: the newest messages fanned out here, (position, kind, body), consecutive.
        self.recent: collections.deque[tuple[str, Kind, bytes]] | None = None
        self.members: dict[Member, Format] = {}
        self.watchers: dict[Member, None] = {}
        #: Server-side subscriptions of this process (no presence, no connection).
        self.subs: dict[Subscription, None] = {}
        self.lock = asyncio.Lock()
        self.subscribed = False
        self._snapshot: tuple[tuple[str, tuple[Any, ...]], ...] | None = None

    @property
    def occupied(self) -> bool:
        """Has the room a member or a subscription here (then it needs its broker subscription)?"""
        return bool(self.members or self.subs)

    def remember(self, position: str, prev: str, kind: Kind, body: bytes, size: int) -> None:
        """Keep the message at ``position`` among the ``size`` newest; after a gap (a message this
        process did not get, a new epoch) the older ones are forgotten: the kept ones follow
        each other."""
        recent = self.recent
        if recent is None:
            recent = self.recent = collections.deque(maxlen=size)
        elif recent and recent[-1][0] != prev:
            recent.clear()
        recent.append((position, kind, body))

    def seed(self, entries: list[tuple[str, Kind, bytes]], size: int) -> None:
        """Keep what a history read returned while the room was subscribed here (so every
        later message reaches this process live) among the newest messages: the resumes that
        follow are then served from memory. Only consecutive entries that end where the kept
        ones begin (or with nothing kept) are taken; the kept newest are never evicted."""
        epoch, first = position_key(entries[0][0])
        last = first + len(entries) - 1
        if position_key(entries[-1][0]) != (epoch, last):
            return  # a hole (a malformed message left out): not a run of the history
        recent = self.recent
        if not recent:
            self.recent = collections.deque(entries[-size:], maxlen=size)
            return
        kept_epoch, kept_first = position_key(recent[0][0])
        if kept_epoch != epoch or not first < kept_first <= last + 1:
            return  # not adjoining what is kept
        older = entries[: kept_first - first][-(size - len(recent)) :] if size > len(recent) else []
        recent.extendleft(reversed(older))

    def recent_after(self, after: str, until: str | None) -> list[tuple[str, Kind, bytes]] | None:
        """The kept messages after ``after`` when they hold the very next one (and reach
        ``until``), else None: the broker's history must answer."""
        recent = self.recent
        if not recent:
            return None
        epoch, first = position_key(recent[0][0])
        last = first + len(recent) - 1
        after_epoch, number = position_key(after)
        if after_epoch != epoch or not first <= number + 1 <= last:
            return None
        if until is not None and (position_key(until)[0] != epoch or position_key(until)[1] > last):
            return None
        return list(itertools.islice(recent, number + 1 - first, None))

    def snapshot(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The members' sinks by format (formats without members left out), then the
        subscriptions' as format ``"value"``; rebuilt only when membership changes."""
        if self._snapshot is None:
            groups: list[tuple[str, tuple[Any, ...]]] = []
            for fmt in _FORMATS:
                sinks = tuple(m.deliver for m, f in self.members.items() if f == fmt)
                if sinks:
                    groups.append((fmt, sinks))
            if self.subs:
                groups.append(("value", tuple(sub.deliver for sub in self.subs)))
            self._snapshot = tuple(groups)
        return self._snapshot


def check_room(room: str) -> None:
    if not is_text(room) or not room or len(room) > MAX_ROOM_LENGTH:
        raise ValueError(
            f"room names are non-empty strings of at most {MAX_ROOM_LENGTH} characters, without a lone surrogate"
        )


def connection(member: Any) -> Connection:
    if isinstance(member, Connection):
        return member
    scope = member if isinstance(member, dict) else getattr(member, "scope", None)
    conn = connection_of(scope) if scope is not None else None
    if conn is None:
        raise ConfigurationError(
            "this connection has no asgi_ws connection shell: put an asgi_ws session middleware "
            "(BackpressureMiddleware, HeartbeatMiddleware or RateLimitMiddleware) around the endpoint, "
            "or serve it with PubSubApp; that is how every member gets a bounded send queue"
        )
    return conn


__all__ = ["MAX_ROOM_LENGTH", "Member", "Room", "RoomsStats", "check_room", "connection"]
