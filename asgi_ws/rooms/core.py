"""Rooms: named groups of WebSocket connections, in every worker process, on a pluggable broker.

A process holds **one** broker subscription per room however many of its connections are
members, encodes each message **once** per member format, and hands it to each local member's
delivery sink without awaiting (:mod:`asgi_ws.delivery`: the connection's outbound path, or
the resumable session that installed itself there): a slow member never stalls a room, and
the fan-out loop, one for every kind of member, is as short as it can be. Server code
follows a room with :meth:`Rooms.subscribe` (:mod:`asgi_ws.rooms.subscription`): the same
loop hands it the published value, sharing the room's broker subscription.

Without history, a publish goes to the broker first, then to the local members: the other
processes' members do not wait for this one's fan-out; a process ignores its own echo. With
history (``?history=N``) every member, local ones too, receives through the broker, in the
order of the room's positions, each message with its :class:`~asgi_ws.delivery.RoomMark`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from .. import log as _log
from .._repeated import RepeatedLog
from .._scope import user_identity
from ..brokers import Broker, BrokerEvent, MemoryBroker, broker_from_url
from ..brokers.history import previous
from ..connection import Connection
from ..delivery import Membership, MembershipSink, RoomMark
from ..exceptions import ConfigurationError, PermissionDenied
from ..outbound import Outbound, OutboundTotals, QueueLimits
from ..protocol import ProtocolError, is_text
from ..types import Message, Scope
from . import envelope
from .envelope import EnvelopeError, Format
from .members import Member, Room, RoomsStats, check_room, connection
from .presence import PresenceEntry, PresenceTracker, check_meta
from .presence_link import PresenceCallback, PresenceLink
from .replay import Decoded, HistoryReads
from .subscription import Fallback, Options, RoomMessage, Subscription, SubscriptionPolicy, check_position

logger = logging.getLogger("asgi_ws.rooms")

Authorize = Callable[[Scope, str, str], "bool | str | Awaitable[bool | str]"]
#: Malformed broker messages and presence messages dropped for a full backlog are counted one
#: by one, and logged at once, then at most once per this many seconds with how many there were.
MALFORMED_LOG_INTERVAL = 60.0


class Rooms:
    """Join WebSocket connections to rooms and publish to them, across worker processes.

    Args:
        broker: a broker URL (``memory://``, the default; ``redis://``, ``postgres://``,
            ``nats://``, ``amqp://``) or a configured :class:`~asgi_ws.brokers.Broker`.
        authorize: optional ``authorize(scope, room, action) -> True | False | reason``
            (sync or async), ``action`` being ``"subscribe"`` or ``"publish"``. Only ``True``
            allows; ``False`` denies with ``forbidden``, a string denies with that reason.
            Checked by :meth:`join`, by :meth:`subscribe` when ``scope`` is given, by
            :meth:`publish` when ``sender`` is given, and by :class:`~asgi_ws.PubSubApp` for
            every client request.
        namespace: prefix of this instance's broker channels; instances with different
            namespaces on one broker do not see each other.
        presence: keep the cluster-wide member list (:meth:`members`, presence events).
        presence_interval: seconds between presence beats.
        presence_ttl: seconds after which a silent process's members are dropped
            (default three intervals).
        default_limits: outbound queue bounds given to members whose connection has none
            (no BackpressureMiddleware): rooms never fan out to an unbounded connection.
        node: this process's id in the cluster (default: random).
        recent: with a history broker, messages kept in memory per room with local members
            (the newest this process fanned out), from which a resumed session here gets
            what it missed without reading the broker's history; 0 keeps none.
    """

    def __init__(
        self,
        broker: str | Broker = "memory://",
        *,
        authorize: Authorize | None = None,
        namespace: str = "asgi_ws",
        presence: bool = True,
        presence_interval: float = 5.0,
        presence_ttl: float | None = None,
        default_limits: QueueLimits | None = None,
        node: str | None = None,
        recent: int = 1024,
    ) -> None:
        if recent < 0:
            raise ConfigurationError("recent is a number of messages >= 0")
        if not namespace or ":" in namespace or "!" in namespace:
            raise ConfigurationError("namespace must be a non-empty string without ':' or '!'")
        if presence_interval <= 0:
            raise ConfigurationError("presence_interval must be positive")
        self.broker: Broker = broker_from_url(broker) if isinstance(broker, str) else broker
        self.authorize = authorize
        self.namespace = namespace
        self.node = node or uuid.uuid4().hex[:12]
        self.presence_enabled = presence
        self.presence_interval = presence_interval
        self.default_limits = default_limits or QueueLimits(max_messages=1000, policy="drop_oldest")
        self.totals = OutboundTotals()
        self.stats = RoomsStats()
        self._repeated = RepeatedLog(logger, MALFORMED_LOG_INTERVAL)
        tracker = PresenceTracker(self.node, presence_ttl or 3 * presence_interval, self._presence_malformed)
        self._presence = PresenceLink(
            self.broker, f"{namespace}!presence", tracker, presence_interval, self._repeated, self._watchers
        )
        #: True when the broker keeps history (``?history=N``): resumed sessions get the room
        #: messages they missed; local members then receive through the broker too.
        self.history = self.broker.history_size > 0
        self.recent = recent if self.history else 0
        self._remote = self.history or not isinstance(self.broker, MemoryBroker)
        self._history = HistoryReads(self.broker, self.stats, self._malformed, self._spawn)
        self._rooms: dict[str, Room] = {}
        self._by_channel: dict[str, Room] = {}
        self._members: dict[Connection, Member] = {}
        self._by_id: dict[str, Member | Subscription] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._closed = False

    # -- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the broker and start presence; called on first use if you do not."""
        if self._closed:
            raise ConfigurationError("this Rooms instance was closed")
        if self._started:
            return
        _log.settle(early=True)  # under uvicorn, logging is configured by the lifespan's start
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise ConfigurationError("this Rooms instance was closed")
            await self.broker.connect(self._on_broker_message, self._on_broker_event)
            if self.presence_enabled:
                await self._presence.start(self._spawn)
            self._started = True
            logger.info("rooms on %s started (node %s)", self.broker.safe_url, self.node)

    async def close(self) -> None:
        """Say goodbye to the other processes, stop presence and close the broker."""
        if self._closed:
            return
        self._closed = True
        for state in list(self._rooms.values()):
            for sub in list(state.subs):
                sub._end()  # their iteration ends after what they hold
        if self._started and self.presence_enabled:
            await self._presence.goodbye()
        # Cancel until they end: on Python 3.11 asyncio.wait_for (redis-py's socket writes)
        # swallows a cancellation that arrives as the write completes, and the presence sender
        # would wait for its queue forever, and the shutdown with it.
        tasks, pending = list(self._tasks), set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        await asyncio.gather(*tasks, return_exceptions=True)  # retrieve their exceptions
        await self.broker.close()

    async def __aenter__(self) -> Rooms:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- membership ------------------------------------------------------------------------

    async def join(
        self,
        room: str,
        member: Any,
        *,
        meta: dict[str, Any] | None = None,
        format: Format = "raw",
        watch: bool = False,
    ) -> None:
        """Make ``member`` (a Starlette/FastAPI WebSocket, a Channels consumer, a scope or a
        :class:`~asgi_ws.Connection`) a member of ``room``.

        ``format="raw"`` delivers published payloads as they are; ``"channel"`` wraps them
        as ``{"channel": room, "data": ...}`` (what PubSubApp's clients receive).

        ``meta`` is shown to every client that asks for the room's presence: a dict of JSON
        (string keys, finite numbers, no lone surrogate), nested at most
        :data:`~asgi_ws.rooms.presence.MAX_META_DEPTH` deep.

        ``watch=True`` sends the member's connection a ``presence_diff`` control frame for
        every join and leave in the room, anywhere (docs/protocol.md); a member already in the
        room starts watching it. A resumed session gets its rooms back with all three.

        Raises:
            PermissionDenied: ``authorize`` refused.
            ConfigurationError: the connection has no asgi_ws connection shell.
            ValueError: ``room``, ``meta`` or the user identity of the connection cannot be
                sent to clients (a lone surrogate, a NaN...).
        """
        check_room(room)
        if meta is not None:
            try:
                check_meta(meta)
            except ProtocolError as exc:
                raise ValueError(f"meta cannot be shown to clients: {exc.message}") from None
        await self.start()
        conn = connection(member)
        await self._check(conn.scope, room, "subscribe")
        entry = self._member(conn)
        state = self._room(room)
        membership = entry.rooms.get(room)
        added = membership is None
        if membership is None:
            membership = entry.rooms[room] = Membership(format, dict(meta or {}), watch)
            state.members[entry] = format
            state._snapshot = None
            if self.presence_enabled:
                self._presence.join(room, entry.id, entry.user, membership.meta)
        elif watch and not membership.watch:
            membership = entry.rooms[room] = membership._replace(watch=True)
        if membership.watch:
            state.watchers[entry] = None
        sink = entry.sink
        follower = sink if isinstance(sink, MembershipSink) else None
        if follower is not None:  # before any message of the room can reach it
            follower.joined(room, membership, None)
        try:
            # In a task of this instance, as for subscriptions: a cancelled caller does not
            # cancel the broker's own request half-way (RabbitMQ closes a channel whose bind is cancelled).
            await asyncio.shield(self._spawn(self._sync_subscription(state)))
        except BaseException:
            if added:  # a join that failed (broker down, cancelled) leaves no member behind
                self._remove(entry, room)
                if not self._closed:
                    self._spawn(self._sync_quietly(state))
            raise
        # Where a session's view of the room starts: the messages after it reach it, or its fill.
        if follower is not None and state.last is not None and entry.rooms.get(room) == membership:
            follower.joined(room, membership, state.last)

    async def leave(self, room: str, member: Any) -> None:
        """Remove ``member`` from ``room`` (nothing happens if it was not a member)."""
        entry = self._members.get(connection(member))
        if entry is not None and room in entry.rooms:
            self._remove(entry, room)
            state = self._rooms.get(room)
            if state is not None:
                await self._sync_subscription(state)

    async def leave_all(self, member: Any) -> None:
        """Remove ``member`` from every room (done automatically when its connection ends)."""
        entry = self._members.get(connection(member))
        if entry is not None:
            rooms = list(entry.rooms)
            self._forget(entry)
            await asyncio.gather(*(self._sync_subscription(self._rooms[r]) for r in rooms if r in self._rooms))

    def rooms_of(self, member: Any) -> frozenset[str]:
        """The rooms ``member`` is in (in this process)."""
        entry = self._members.get(connection(member))
        return frozenset(entry.rooms) if entry else frozenset()

    def membership(self, room: str, member: Any) -> Membership | None:
        """How ``member`` is in ``room`` (format, meta, watch), or None if it is not."""
        entry = self._members.get(connection(member))
        return entry.rooms.get(room) if entry else None

    def local_count(self, room: str) -> int:
        """How many of this process's connections are members of ``room``."""
        state = self._rooms.get(room)
        return len(state.members) if state else 0

    def members(self, room: str) -> list[PresenceEntry]:
        """Every member of ``room`` in every process (presence), this process's first."""
        return self._presence.tracker.members(room)

    def on_presence(self, callback: PresenceCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every join and leave anywhere; returns an unsubscribe function."""
        callbacks = self._presence.callbacks
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None

    # -- server-side subscriptions ------------------------------------------------------------

    def subscribe(
        self,
        room: str,
        *,
        after: str | None = None,
        scope: Scope | None = None,
        max_messages: int = 1000,
        policy: SubscriptionPolicy = "drop_oldest",
        conflate_key: Callable[[RoomMessage], Hashable | None] | None = None,
        fallback: Fallback = "drop_oldest",
    ) -> Subscription:
        """Follow ``room`` from server code: ``async with rooms.subscribe(room) as sub: async for
        message in sub`` (each a :class:`~asgi_ws.rooms.RoomMessage`: the published value and its
        position). Entering subscribes; leaving unsubscribes (:class:`~asgi_ws.rooms.Subscription`).

        The subscription shares the room's one broker subscription in this process with its
        WebSocket members and other subscriptions; it is not a member (no presence, not in
        :meth:`local_count`).

        Args:
            room: the room.
            after: with a broker that keeps history, replay what the room carried after this
                position first (at most the broker's ``history`` messages), then go on live,
                with no gap and no duplicate at the seam.
            scope: the scope of the client this subscription serves (an HTTP request's, for
                an SSE endpoint): ``authorize(scope, room, "subscribe")`` is asked on entering.
                Without it ``authorize`` is not asked: server code decides for itself.
            max_messages: messages buffered at most while the consumer is behind.
            policy: what a message finding the buffer full does: ``"drop_oldest"`` (the
                oldest buffered is dropped), ``"drop_newest"`` (it is dropped),
                ``"conflate"`` (a buffered message of the same ``conflate_key`` is replaced,
                at any fill level; else ``fallback``), ``"close"`` (the iteration raises
                :class:`~asgi_ws.rooms.SubscriptionOverflow`). No ``"block"``: the fan-out
                cannot wait.
            conflate_key: ``key(message) -> hashable | None`` for ``"conflate"`` (None: never
                conflated).
            fallback: what ``"conflate"`` does for a message without a buffered twin when the
                buffer is full: ``"drop_oldest"``, ``"drop_newest"`` or ``"close"``.

        Raises:
            ValueError: ``room`` is not a room name, ``after`` not a position.
            ConfigurationError: bad options; ``after`` with a broker that keeps no history.

        Entering raises :class:`~asgi_ws.exceptions.PermissionDenied` (``authorize`` refused),
        :class:`~asgi_ws.rooms.HistoryGap` (the history no longer reaches back to ``after``),
        or the broker's error.
        """
        check_room(room)
        if after is not None:
            check_position(after)
            if not self.history:
                raise ConfigurationError(
                    f"after= needs a broker that keeps history: {self.broker.safe_url} does not "
                    "(memory://, redis://, postgres:// and nats:// do, with ?history=N)"
                )
        options = Options(max_messages, policy, conflate_key, fallback).checked()
        return Subscription(self, room, f"{self.node}.{next(self._ids)}", after, scope, options)

    async def _attach(self, sub: Subscription) -> str | None:
        """A subscription enters: it is handed the room's messages, and the room is subscribed.
        Returns the room's last position here (with history: the last one fanned out, or the
        broker's newest when the room was subscribed)."""
        await self.start()
        if sub.scope is not None:
            await self._check(sub.scope, sub.room, "subscribe")
        state = self._room(sub.room)
        state.subs[sub] = None
        state._snapshot = None
        self._by_id[sub.id] = sub
        try:
            # In a task of this instance: a cancelled caller does not cancel the broker's own
            # request half-way (RabbitMQ closes a channel whose bind is cancelled).
            await asyncio.shield(self._spawn(self._sync_subscription(state)))
        except BaseException:
            # A subscription that failed (broker down, cancelled) leaves nothing: the room is
            # unsubscribed once the broker's request in flight is done, without waiting for it.
            if self._release(sub) is not None and not self._closed:
                self._spawn(self._sync_quietly(state))
            raise
        return state.last

    async def _detach(self, sub: Subscription) -> None:
        """A subscription leaves; the room is unsubscribed if nobody else here follows it. The
        broker is told from a task of this instance: a cancellation of the caller (the usual
        way a streaming response ends) does not stop it half-way."""
        state = self._release(sub)
        if state is not None and not self._closed:
            await asyncio.shield(self._spawn(self._sync_quietly(state)))

    def _release(self, sub: Subscription) -> Room | None:
        """Hand ``sub`` nothing more; the room's state if it was there."""
        self._by_id.pop(sub.id, None)
        state = self._rooms.get(sub.room)
        if state is None or sub not in state.subs:
            return None
        del state.subs[sub]
        state._snapshot = None
        return state

    async def _sync_quietly(self, state: Room) -> None:
        try:
            await self._sync_subscription(state)
        except Exception as exc:  # the broker is down or closing: it drops its subscriptions itself
            logger.debug("room %r not unsubscribed: %r", state.name, exc)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, room: str, data: Any, *, exclude: Any = None, sender: Any = None) -> int:
        """Send ``data`` to every member and subscription of ``room`` in every process.

        ``data`` is sent as a binary message when it is ``bytes``, as text when it is a
        ``str``, and JSON-encoded otherwise (an :class:`~asgi_ws.rooms.envelope.Payload` is
        sent as it was encoded). ``exclude`` (a member, or a :class:`~asgi_ws.rooms.Subscription`)
        does not receive it, in any process. With ``sender`` (a member, or a subscription made
        with a ``scope``) the ``publish`` action is authorized against its scope.
        Returns how many local members and subscriptions it was handed to (0 with a history
        broker: they then receive through the broker).

        Raises:
            ValueError: ``data`` cannot be sent to clients (a lone surrogate in a string, a
                NaN or infinite number...): nothing is delivered nor published.
        """
        check_room(room)
        kind, payload = envelope.payload_of(data)
        await self.start()
        if sender is not None:
            scope = sender.scope if isinstance(sender, Subscription) else connection(sender).scope
            if scope is not None:
                await self._check(scope, room, "publish")
        skip: Member | Subscription | None = None
        if isinstance(exclude, Subscription):
            skip = exclude
        elif exclude is not None:
            skip = self._members.get(connection(exclude))
        self.stats.published += 1
        if not self._remote:  # memory:// without history: nobody else to reach
            return self._fan_out(room, kind, payload, skip)
        channel = f"{self.namespace}:{room}"
        frame = envelope.encode(kind, payload, self.node, skip.id if skip else "")
        if self.history:
            # Every member, local ones too, receives through the broker, in the order of the
            # positions: the order in which a resumed session's gap is filled in.
            await self.broker.publish(channel, frame)
            return 0
        # The broker first, then the local fan-out: the other processes' members do not wait for
        # this one's (a broker round trip, ~0.2 ms here, against ~10 µs per local member). Local
        # members still get the message when the broker fails; the failure is the caller's.
        try:
            await self.broker.publish(channel, frame)
        finally:
            delivered = self._fan_out(room, kind, payload, skip)
        return delivered

    async def publish_many(self, rooms: Iterable[str], data: Any, *, exclude: Any = None, sender: Any = None) -> int:
        """:meth:`publish` the same ``data`` to several rooms; returns the local deliveries."""
        encoded = envelope.payload_of(data)
        return sum([await self.publish(room, encoded, exclude=exclude, sender=sender) for room in rooms])

    def _fan_out(
        self,
        room: str,
        kind: envelope.Kind,
        payload: bytes,
        skip: Member | Subscription | None,
        mark: RoomMark | None = None,
    ) -> int:
        state = self._rooms.get(room)
        if state is None:
            return 0
        skip_deliver = skip.deliver if skip is not None else None
        delivered = dropped = 0
        message: Any
        for fmt, sinks in state.snapshot():
            if fmt == "value":  # the subscriptions: the published value, decoded once for all
                try:
                    message = RoomMessage(room, envelope.value_of(kind, payload), mark[1] if mark else None)
                except EnvelopeError as exc:
                    self._malformed(f"a message of room {room!r}", exc)
                    continue
            else:
                message = envelope.message_for(fmt, room, kind, payload)  # type: ignore[arg-type]
            for deliver in sinks:  # the hot loop: no await, no allocation per member
                if deliver is skip_deliver:
                    continue
                if deliver(message, mark):
                    delivered += 1
                else:
                    dropped += 1
        self.stats.delivered += delivered
        self.stats.dropped += dropped
        return delivered

    async def missed(
        self, room: str, fmt: Format, after: str, until: str | None = None
    ) -> list[tuple[str, Message]] | None:
        """What ``room`` carried after position ``after`` (at least up to ``until``), as members
        of format ``fmt`` get it, with each message's position; None when the broker's history
        no longer reaches back.

        Needs a broker with history (``?history=N``). Read from the messages this process
        fanned out itself when it kept them all (``recent``), else from the broker's history,
        one read per room at a time however many ask at once (:mod:`asgi_ws.rooms.replay`);
        messages published since then reach the room's members live. The ``exclude`` of a
        publish is not applied (the excluded member may be long gone).
        """
        entries = await self._after(room, after, until)
        if entries is None:
            return None
        return [(position, envelope.message_for(fmt, room, kind, body)) for position, kind, body in entries]

    async def _history_after(self, room: str, after: str, until: str | None = None) -> list[tuple[str, Any]] | None:
        """What ``room`` carried after position ``after`` (:meth:`missed`), as published values."""
        entries = await self._after(room, after, until)
        if entries is None:
            return None
        values: list[tuple[str, Any]] = []
        for position, kind, body in entries:
            try:
                values.append((position, envelope.value_of(kind, body)))
            except EnvelopeError as exc:
                self._malformed(f"a message of the history of {room!r}", exc)
        return values

    async def _after(self, room: str, after: str, until: str | None = None) -> list[Decoded] | None:
        """What :meth:`missed` and a subscription's ``after=`` read: the kept newest messages
        when they hold it all, else the broker's history; None when that no longer reaches back."""
        state = self._rooms.get(room)
        kept = state.recent_after(after, until) if state is not None else None
        if kept is not None:
            return kept
        subscribed = state is not None and state.subscribed
        entries = await self._history.after(f"{self.namespace}:{room}", after)
        if entries and subscribed and self.recent and self._rooms.get(room) is state:
            assert state is not None
            state.seed(entries, self.recent)  # subscribed all along: the next resumes read memory
        return entries

    # -- the broker's side ---------------------------------------------------------------------

    def _on_broker_message(self, channel: str, payload: bytes, position: str | None = None, /) -> None:
        if channel == self._presence.channel:
            self._presence.receive(payload, self._presence_malformed)
            return
        state = self._by_channel.get(channel)
        if state is None:
            return
        try:
            kind, body, node, exclude = envelope.decode(payload)
        except EnvelopeError as exc:
            self._malformed(f"a message on {channel!r}", exc)
            return
        if node == self.node:
            if not self.history:
                return  # our own publish, already delivered locally
        else:
            self.stats.received += 1
        mark = None
        if position is not None:
            mark = RoomMark(state.name, position, previous(position))
            state.last = position
            if self.recent:
                state.remember(position, mark.prev, kind, body, self.recent)
        self._fan_out(state.name, kind, body, self._by_id.get(exclude) if exclude else None, mark)

    def _on_broker_event(self, event: BrokerEvent) -> None:
        if event.kind == "disconnected":
            self.stats.broker_disconnects += 1
            logger.warning("rooms lost the broker %s: %s", event.url, event.error)
        else:
            self.stats.broker_lost_seconds += event.lost_seconds or 0.0
            logger.warning(
                "rooms reconnected to %s after %.1f s: messages published meanwhile may be lost",
                event.url,
                event.lost_seconds or 0.0,
            )
            if self.presence_enabled:
                self._presence.resync()

    async def _sync_subscription(self, state: Room) -> None:
        """Make the broker subscription of ``state`` match whether it has members (one at a time)."""
        async with state.lock:
            if state.occupied and not state.subscribed:
                if self.history:  # read first: what is published meanwhile is not lost, only not live
                    state.last = await self.broker.last_position(state.channel)
                await self.broker.subscribe(state.channel)
                state.subscribed = True
            elif not state.occupied and state.subscribed:
                await self.broker.unsubscribe(state.channel)
                state.subscribed = False
            if not state.occupied and not state.subscribed and self._rooms.get(state.name) is state:
                del self._rooms[state.name]
                del self._by_channel[state.channel]

    # -- members ----------------------------------------------------------------------------------

    def _room(self, room: str) -> Room:
        """The state of ``room``, made when it gets its first member or subscription here."""
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = Room(room, f"{self.namespace}:{room}")
            self._by_channel[state.channel] = state
        return state

    def _member(self, conn: Connection) -> Member:
        entry = self._members.get(conn)
        if entry is None:
            if conn.outbound.limits is None:
                conn.outbound.configure(self.default_limits, self.totals)
            identity = user_identity(conn.scope)
            if identity is not None:  # presence shows it to clients and other processes: as text
                identity = str(identity)
                if not is_text(identity):
                    raise ValueError("the user identity of this connection holds a lone surrogate (auth backend)")
            entry = self._members[conn] = Member(conn, f"{self.node}.{next(self._ids)}", identity)
            self._by_id[entry.id] = entry
            conn.on_end(lambda: self._forget_and_sync(entry))
        elif entry.sink is not conn.sink:  # a session was installed or removed since
            entry.sink, entry.deliver = conn.sink, conn.sink.deliver
            for room in entry.rooms:
                state = self._rooms.get(room)
                if state is not None:
                    state._snapshot = None
        return entry

    def _watchers(self, room: str) -> Iterable[Outbound]:
        state = self._rooms.get(room)
        return [member.conn.outbound for member in state.watchers] if state is not None and state.watchers else ()

    def _remove(self, entry: Member, room: str) -> None:
        if entry.rooms.pop(room, None) is not None:
            sink = entry.sink
            if isinstance(sink, MembershipSink):
                sink.left(room)
        state = self._rooms.get(room)
        if state is not None:
            state.watchers.pop(entry, None)
            if state.members.pop(entry, None) is not None:
                state._snapshot = None
        if self.presence_enabled:
            self._presence.leave(room, entry.id)

    def _forget(self, entry: Member) -> None:
        for room in list(entry.rooms):
            self._remove(entry, room)
        self._members.pop(entry.conn, None)
        self._by_id.pop(entry.id, None)

    def _forget_and_sync(self, entry: Member) -> None:
        rooms = list(entry.rooms)
        self._forget(entry)
        if rooms and not self._closed:
            self._spawn(self._sync_rooms(rooms))

    async def _sync_rooms(self, rooms: list[str]) -> None:
        for room in rooms:
            state = self._rooms.get(room)
            if state is not None:
                await self._sync_subscription(state)

    async def _check(self, scope: Scope, room: str, action: str) -> None:
        if self.authorize is None:
            return
        verdict = self.authorize(scope, room, action)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is True:
            return
        raise PermissionDenied(verdict if isinstance(verdict, str) and verdict else "forbidden")

    async def check(self, member: Any, room: str, action: str) -> None:
        """Ask ``authorize`` whether ``member`` may ``action`` (``"subscribe"``/``"publish"``) ``room``.

        Raises:
            PermissionDenied: it may not.
        """
        await self._check(connection(member).scope, room, action)

    # -- malformed input ----------------------------------------------------------------------------

    def _presence_malformed(self, reason: object) -> None:
        self._malformed("a presence message", reason)

    def _malformed(self, what: str, reason: object) -> None:
        """Count a broker message ignored for its shape; log it at once, then at most once per interval."""
        self.stats.malformed += 1
        self._repeated.warning(
            "rooms ignored %s from the broker: %s (%d malformed so far)",
            what,
            reason,
            self.stats.malformed,
            key="malformed",
        )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


__all__ = ["Rooms", "RoomsStats"]
