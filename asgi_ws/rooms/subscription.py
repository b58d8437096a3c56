"""Server-side subscriptions to a room: ``async with rooms.subscribe("orders") as sub: async for m in sub``.

A :class:`Subscription` is code of this process following a room (a Server-Sent Events
endpoint, a GraphQL resolver, a background worker, a test), next to the room's WebSocket
members. It shares the room's one broker subscription in this process with them and with
the other subscriptions, and it is handed each message by the same fan-out loop, without
awaiting: the value that was published, decoded once per message for every subscription of
the process (:class:`RoomMessage`).

What the loop hands over waits in the subscription's own bounded buffer until the consumer
takes it; when the consumer falls ``max_messages`` behind, the policy decides, as
BackpressureMiddleware's do for a connection (``docs/middleware/backpressure.md``), with the
same names: ``drop_oldest`` (the default), ``drop_newest``, ``conflate`` (by a key of the
message) and ``close`` (the iteration raises :class:`SubscriptionOverflow`). There is no
``block``: the fan-out cannot wait for one consumer without stalling the room for everyone.
The buffer is this module's own (the connection's outbound queue measures ASGI messages).

With a broker that keeps history, ``after=position`` replays what the room carried after a
position, then goes on live with nothing missed and nothing twice at the seam: the
subscription is made first (live messages wait in the buffer), then what followed ``after``
is read the way a resumed session's rooms are (:meth:`Rooms.missed <asgi_ws.Rooms.missed>`:
this process's newest messages when they hold it all, else the broker's history), and the live
messages that the replay holds are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..brokers.base import position_key
from ..brokers.history import previous
from ..delivery import RoomMark
from ..exceptions import AsgiWsError, ConfigurationError
from ..types import Scope

if TYPE_CHECKING:
    from .core import Rooms

#: What happens to a message that finds the subscription's buffer full.
SubscriptionPolicy = Literal["drop_oldest", "drop_newest", "conflate", "close"]
#: What ``conflate`` does with a message without a queued twin when the buffer is full.
Fallback = Literal["drop_oldest", "drop_newest", "close"]
POLICIES: frozenset[str] = frozenset({"drop_oldest", "drop_newest", "conflate", "close"})
FALLBACKS: frozenset[str] = frozenset({"drop_oldest", "drop_newest", "close"})
# A position as brokers write it (asgi_ws/brokers/history.py): ASCII digits only, as int()
# alone would also take " 1", "+1" or "1_0".
_POSITION = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """One message of a room, as a subscription receives it.

    The same object is handed to every subscription of this process: treat ``data`` as read-only.

    Attributes:
        room: the room.
        data: what was published: ``str`` (text), ``bytes`` (binary) or the JSON value
            (``dict``, ``list``, number, ``bool``, ``None``) of anything else.
        position: the message's position in the room's history (a broker with history:
            ``"<epoch>-<n>"``, see :mod:`asgi_ws.brokers.history`), else None. Pass the last one
            you handled as ``after=`` to resume.
    """

    room: str
    data: Any
    position: str | None = None


class SubscriptionError(AsgiWsError):
    """Base of what iterating a :class:`Subscription`, or entering it, raises for the subscription itself."""


class SubscriptionOverflow(SubscriptionError):
    """The consumer fell ``max_messages`` behind under ``policy="close"`` (or the ``conflate``
    fallback ``"close"``); what was buffered is dropped and the subscription takes no more.

    Attributes:
        room: the room.
        position: the position of the last message handed out (or the ``after`` it started
            from; None without history): subscribe again with ``after=position`` to go on
            from there with nothing lost.
    """

    def __init__(self, room: str, position: str | None, limit: int) -> None:
        resume = f"; subscribe again with after={position!r}" if position is not None else ""
        super().__init__(f"the subscription to room {room!r} fell {limit} messages behind (policy close){resume}")
        self.room = room
        self.position = position


class HistoryGap(SubscriptionError):
    """Entering a subscription with ``after=position``: the broker's history no longer holds
    the message after ``position`` (trimmed by count or age, or the history was created again).

    Attributes:
        room: the room.
        after: the position asked for.
    """

    def __init__(self, room: str, after: str) -> None:
        super().__init__(f"the history of room {room!r} no longer reaches back to position {after!r}")
        self.room = room
        self.after = after


def check_position(position: object) -> str:
    """Return ``position`` if it is a position as brokers write them (``"<digits>-<digits>"``).

    Raises:
        ValueError: it is not (anything a client sends, a ``Last-Event-ID``, goes through here).
    """
    if not isinstance(position, str) or _POSITION.fullmatch(position) is None:
        raise ValueError(f"not a room position ('<epoch>-<number>', digits only): {str(position)[:60]!r}")
    return position


def follows(position: str, after: str) -> bool:
    """Is ``position`` the message right after ``after`` in its room (the first of a newer
    epoch follows any position of an older one, :mod:`asgi_ws.brokers.history`)?"""
    if previous(position) == after:
        return True
    epoch, number = position_key(position)
    return number == 1 and position_key(after)[0] < epoch


class Options(NamedTuple):
    """How a subscription buffers (the arguments of :meth:`Rooms.subscribe <asgi_ws.Rooms.subscribe>`)."""

    max_messages: int
    policy: SubscriptionPolicy
    conflate_key: Callable[[RoomMessage], Hashable | None] | None
    fallback: Fallback

    def checked(self) -> Options:
        """These options, if they make sense.

        Raises:
            ConfigurationError: they do not; ``policy="block"`` above all (the fan-out cannot wait).
        """
        max_messages, policy, conflate_key, fallback = self
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ConfigurationError("max_messages must be a positive integer")
        if str(policy) == "block":
            raise ConfigurationError(
                "policy='block' cannot apply to a subscription: the room's fan-out cannot wait for one "
                "consumer; use 'close' (the consumer resumes with after=position) or a drop policy"
            )
        if policy not in POLICIES:
            raise ConfigurationError(f"policy must be one of {sorted(POLICIES)}, not {policy!r}")
        if fallback not in FALLBACKS:
            raise ConfigurationError(f"fallback must be one of {sorted(FALLBACKS)}, not {fallback!r}")
        if policy == "conflate" and conflate_key is None:
            raise ConfigurationError("policy='conflate' needs conflate_key=callable(message) -> key")
        return self


class Subscription:
    """A subscription of server code to one room; made by :meth:`Rooms.subscribe
    <asgi_ws.Rooms.subscribe>`, used as ``async with ... as sub: async for message in sub``.

    Entering it subscribes (the room's broker subscription is up when ``async with`` has
    entered: what is published from then on, anywhere, reaches it); leaving it, however the
    block ends (cancellation included), unsubscribes the room from the broker when it was the
    room's last member or subscription in this process. The iteration yields
    :class:`RoomMessage` in the order the room carried them, raises
    :class:`SubscriptionOverflow` under the ``close`` policy, and ends when the block is left
    or the Rooms instance closes (after the messages already buffered). One task reads it.

    Attributes:
        room: the room.
        id: its id among this process's members and subscriptions (``exclude`` sends it to
            the other processes).
        after: the position it replays from, or None.
        scope: the scope ``authorize`` was asked about (and ``publish(sender=sub)`` is), or None.
        options: its buffer's bound and policy.
        position: the position of the last message handed out (initially ``after``).
        dropped: messages the policy dropped (``drop_*``, ``close``).
        conflated: messages replaced by a newer one of the same key (``conflate``).
    """

    __slots__ = (
        "_buffer",
        "_ended",
        "_entered",
        "_failure",
        "_key",
        "_replay",
        "_skip",
        "_waiter",
        "after",
        "conflated",
        "deliver",
        "dropped",
        "id",
        "options",
        "position",
        "room",
        "rooms",
        "scope",
    )

    def __init__(
        self, rooms: Rooms, room: str, subscription_id: str, after: str | None, scope: Scope | None, options: Options
    ) -> None:
        self.rooms, self.room, self.id = rooms, room, subscription_id
        self.scope, self.options = scope, options
        self.after = self.position = after
        self.dropped = self.conflated = 0
        self._key = options.conflate_key if options.policy == "conflate" else None
        # Live messages, oldest first; keyed (conflate) so that a newer twin replaces a queued one.
        self._buffer: collections.deque[RoomMessage] | collections.OrderedDict[Hashable, RoomMessage] = (
            collections.OrderedDict() if self._key is not None else collections.deque()
        )
        self._replay: collections.deque[RoomMessage] = collections.deque()  # from the history: unbounded by the policy
        #: After a replay: live messages at or before this position are in it (their delivery
        #: from the broker may lag behind the history's answer), and are dropped.
        self._skip: tuple[int, int] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._entered = self._ended = False
        self._failure: SubscriptionOverflow | None = None
        #: One bound method, kept: the fan-out loop calls it (and ``exclude`` compares it).
        self.deliver = self._deliver

    def __repr__(self) -> str:
        return f"<Subscription {self.id} to {self.room!r} position={self.position!r} buffered={self.buffered}>"

    @property
    def buffered(self) -> int:
        """Messages waiting to be handed out (the replay's included)."""
        return len(self._buffer) + len(self._replay)

    # -- entering and leaving ------------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        if self._entered:
            raise RuntimeError("a subscription is entered once: call rooms.subscribe() again")
        self._entered = True
        last = await self.rooms._attach(self)
        if self.after is None:
            self.position = self._start(last)
            return self
        try:
            await self._catch_up(self.after)
        except BaseException:
            self._ended = True
            await self.rooms._detach(self)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._end()
        await self.rooms._detach(self)

    async def _catch_up(self, after: str) -> None:
        """Replay what the room carried after ``after``, ahead of the live messages buffered
        since the subscription was made; those the replay holds are dropped, whether they came
        before the history's answer or come after it. A first live message that does not
        follow the replay (the history was read before it had it) makes the history be read
        again from the replay's end."""
        reached = after
        while True:
            entries = await self.rooms._history_after(self.room, reached)
            if entries is None:
                raise HistoryGap(self.room, reached)
            for position, value in entries:
                self._replay.append(RoomMessage(self.room, value, position))
            if entries:
                reached = entries[-1][0]
            self._skip = position_key(reached)
            first = self._drop_through(reached)
            if first is None or not entries or first.position is None or follows(first.position, reached):
                return

    def _start(self, last: str | None) -> str | None:
        """Where a live subscription starts, with history: before the first message it holds,
        or the room's last position when it holds none (every later message reaches it, or is
        in the history: ``after=position`` then misses nothing)."""
        buffer = self._buffer
        first = (
            (buffer[0] if isinstance(buffer, collections.deque) else next(iter(buffer.values()))) if buffer else None
        )
        if first is not None and first.position is not None:
            return previous(first.position)
        return last

    def _drop_through(self, reached: str) -> RoomMessage | None:
        """Drop the buffered live messages at or before position ``reached``; the first one left."""
        bound = position_key(reached)
        buffer = self._buffer
        if isinstance(buffer, collections.deque):
            kept = [m for m in buffer if m.position is None or position_key(m.position) > bound]
            buffer.clear()
            buffer.extend(kept)
            return kept[0] if kept else None
        items = [(k, m) for k, m in buffer.items() if m.position is None or position_key(m.position) > bound]
        buffer.clear()
        buffer.update(items)
        return items[0][1] if items else None

    def _end(self) -> None:
        """No more messages: the iteration ends once the buffered ones are handed out."""
        self._ended = True
        self._wake()

    # -- the sink: what the room's fan-out hands over ---------------------------------------------

    def _deliver(self, message: RoomMessage, mark: RoomMark | None = None, /) -> bool:
        """Take one message of the room (never raises, never awaits); False when it was refused."""
        if self._ended or self._failure is not None:
            return False
        if self._skip is not None and message.position is not None:
            if position_key(message.position) <= self._skip:
                return True  # handed out with the replay
            self._skip = None  # the broker hands a room's messages over in position order
        buffer = self._buffer
        token: Hashable = None
        if isinstance(buffer, collections.deque):
            if len(buffer) < self.options.max_messages:
                buffer.append(message)
                self._wake()
                return True
            policy: str = self.options.policy
        else:
            key = self._key_of(message)
            if key is not None and key in buffer:  # a twin waits: the newer one goes last, in its place
                del buffer[key]
                buffer[key] = message
                self.conflated += 1
                self._wake()
                return True
            token = key if key is not None else object()  # a message without a key has no twin
            if len(buffer) < self.options.max_messages:
                buffer[token] = message
                self._wake()
                return True
            policy = self.options.fallback
        if policy == "drop_newest":
            self.dropped += 1
            return False
        if policy == "drop_oldest":
            self.dropped += 1
            if isinstance(buffer, collections.deque):
                buffer.popleft()
                buffer.append(message)
            else:
                buffer.popitem(last=False)
                buffer[token] = message
            self._wake()
            return True
        self.dropped += 1 + len(buffer)
        buffer.clear()
        self._replay.clear()
        self._failure = SubscriptionOverflow(self.room, self.position, self.options.max_messages)
        self._wake()
        return False

    def _key_of(self, message: RoomMessage) -> Hashable | None:
        assert self._key is not None
        try:
            return self._key(message)
        except Exception as exc:  # the fan-out must not fail: the message is not conflated
            self.rooms._repeated.warning(
                "conflate_key failed on a message of room %r: %r (not conflated)", self.room, exc, key="conflate_key"
            )
            return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the consumer's side -------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RoomMessage:
        while True:
            if self._failure is not None:
                raise self._failure
            message = self._take()
            if message is not None:
                return message
            if self._ended:
                raise StopAsyncIteration
            if not self._entered:
                raise RuntimeError("enter the subscription first: async with rooms.subscribe(room) as sub")
            if self._waiter is not None:
                raise RuntimeError("another task is already reading this subscription")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _take(self) -> RoomMessage | None:
        if self._replay:
            message = self._replay.popleft()
        elif self._buffer:
            buffer = self._buffer
            message = buffer.popleft() if isinstance(buffer, collections.deque) else buffer.popitem(last=False)[1]
        else:
            return None
        if message.position is not None:
            self.position = message.position
        return message


__all__ = [
    "FALLBACKS",
    "POLICIES",
    "Fallback",
    "HistoryGap",
    "Options",
    "RoomMessage",
    "Subscription",
    "SubscriptionError",
    "SubscriptionOverflow",
    "SubscriptionPolicy",
    "check_position",
    "follows",
]
