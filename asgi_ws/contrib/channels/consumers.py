"""Rooms, presence and the resumed session in a Channels consumer, without the control protocol.

::

    rooms = Rooms(os.environ.get("REDIS_URL", "memory://"))


    class ChatConsumer(RoomsConsumerMixin, AsyncJsonWebsocketConsumer):
        rooms = rooms

        async def connect(self):
            await self.accept()
            await self.join_room("lobby", meta={"name": self.scope["user"].get_username()})

        async def receive_json(self, content):
            await self.publish("lobby", {"from": self.scope["user"].get_username(), **content})

        async def room_presence(self, event):  # optional: joins and leaves, in order
            await self.send_json({"members": [m.meta.get("name") for m in self.room_members("lobby")]})

A room message goes from :class:`~asgi_ws.Rooms` straight to each member's connection (one
encoding, bounded queues), not through each member's consumer as a ``group_send`` handler
would; what the consumer sends itself (``send``, ``send_json``) is unchanged. The consumer
needs an asgi_ws session middleware around it (``BackpressureMiddleware``,
``HeartbeatMiddleware``, ``RateLimitMiddleware`` or ``ResumeMiddleware``): that is what gives
every member its bounded send queue.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from ...connection import connection_of
from ...exceptions import ConfigurationError
from ...resume.session import Session
from ...rooms import Rooms
from ...rooms.envelope import Format
from ...rooms.presence import PresenceEntry, PresenceEvent
from ...types import Message, Scope

logger = logging.getLogger("asgi_ws.contrib.channels")

#: Presence events waiting for a consumer's ``room_presence`` at most; beyond, they are dropped.
MAX_PENDING_PRESENCE = 1000


class RoomsConsumerMixin:
    """Mix into ``AsyncWebsocketConsumer`` or ``AsyncJsonWebsocketConsumer`` (before it).

    Set ``rooms`` to a :class:`~asgi_ws.Rooms` on the class. The consumer leaves its rooms
    when the connection ends (on disconnect, and whatever ended it).

    With ResumeMiddleware (``rooms=`` the same instance) a resumed session gets its rooms
    back before ``accept()`` returns: :attr:`resumed` is True and :attr:`joined_rooms` lists
    them, and :meth:`join_room` on one of them changes nothing.
    """

    rooms: Rooms | None = None
    scope: Scope

    # -- rooms -------------------------------------------------------------------------------

    async def join_room(self, room: str, *, meta: dict[str, Any] | None = None, format: Format = "raw") -> None:
        """Join ``room`` (see :meth:`Rooms.join <asgi_ws.Rooms.join>`); call it after ``accept()``.

        Raises:
            PermissionDenied: the Rooms' ``authorize`` refused.
        """
        rooms = self._rooms()
        watching = self._watches_presence()
        if watching:  # before joining: the consumer sees its own join
            _relay(rooms).watch(room, self)
        try:
            await rooms.join(room, self, meta=meta, format=format)
        except BaseException:
            if watching and room not in self.joined_rooms:
                _relay(rooms).unwatch(room, self)
            raise

    async def leave_room(self, room: str) -> None:
        """Leave ``room`` (nothing happens if the consumer is not in it)."""
        rooms = self._rooms()
        await rooms.leave(room, self)
        _relay(rooms).unwatch(room, self)

    async def leave_rooms(self) -> None:
        """Leave every room (done for you when the connection ends)."""
        rooms = self._rooms()
        if connection_of(self.scope) is not None:
            await rooms.leave_all(self)
        _relay(rooms).unwatch_all(self)

    async def publish(self, room: str, data: Any, *, exclude_self: bool = False) -> int:
        """Send ``data`` to every member of ``room`` in every process, authorized as this
        consumer's ``publish`` (see :meth:`Rooms.publish <asgi_ws.Rooms.publish>`): ``bytes``
        as a binary message, ``str`` as text, anything else as JSON text."""
        return await self._rooms().publish(room, data, exclude=self if exclude_self else None, sender=self)

    def room_members(self, room: str) -> list[PresenceEntry]:
        """Who is in ``room``, in every process (``entry.user``, ``entry.meta``)."""
        return self._rooms().members(room)

    @property
    def joined_rooms(self) -> frozenset[str]:
        """The rooms this consumer is in."""
        if connection_of(self.scope) is None:
            return frozenset()
        return self._rooms().rooms_of(self)

    async def room_presence(self, event: PresenceEvent) -> None:
        """Override to hear joins and leaves (``event.kind``, ``event.entry``) in this
        consumer's rooms, in order, its own included. Runs in a task of its own, beside the
        consumer's handlers; an exception is logged."""

    # -- the resumable session ---------------------------------------------------------------

    @property
    def ws_session(self) -> Session | None:
        """The ResumeMiddleware session (``scope["asgi_ws"]["session"]``), once accepted; or None."""
        session = self.scope.get("asgi_ws", {}).get("session")
        return session if isinstance(session, Session) else None

    @property
    def resumed(self) -> bool:
        """True when this connection resumed an earlier session (its messages were replayed)."""
        session = self.ws_session
        return session is not None and session.resumed

    # -- Channels' hooks -----------------------------------------------------------------------

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        await super().accept(*args, **kwargs)  # type: ignore[misc]
        if self.rooms is not None and self._watches_presence():
            relay = _relay(self.rooms)
            for room in self.joined_rooms:  # restored by a resume
                relay.watch(room, self)

    async def websocket_disconnect(self, message: Message) -> None:
        try:
            if self.rooms is not None:
                await self.leave_rooms()
        finally:
            await super().websocket_disconnect(message)  # type: ignore[misc]

    # -- internals -----------------------------------------------------------------------------

    def _rooms(self) -> Rooms:
        if self.rooms is None:
            raise ConfigurationError(f"{type(self).__name__}.rooms is not set: rooms = Rooms(...) on the class")
        return self.rooms

    def _watches_presence(self) -> bool:
        return type(self).room_presence is not RoomsConsumerMixin.room_presence


class _Watcher:
    """One consumer's presence events, handed to its ``room_presence`` in order by one task."""

    __slots__ = ("consumer", "queue", "rooms", "task")

    def __init__(self, consumer: RoomsConsumerMixin) -> None:
        self.consumer = consumer
        self.rooms: set[str] = set()
        self.queue: asyncio.Queue[PresenceEvent] = asyncio.Queue(MAX_PENDING_PRESENCE)
        self.task: asyncio.Task[None] | None = None

    def put(self, event: PresenceEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("%s: presence event dropped (room_presence is too slow)", type(self.consumer).__name__)
            return
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.consumer.room_presence(event)
            except OSError:  # the connection closed meanwhile: nothing to tell
                pass
            except Exception:
                logger.exception("%s.room_presence failed", type(self.consumer).__name__)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


class _PresenceRelay:
    """The one presence callback of a Rooms instance, dispatching events to watching consumers."""

    def __init__(self, rooms: Rooms) -> None:
        self.by_room: dict[str, set[_Watcher]] = {}
        self.watchers: dict[RoomsConsumerMixin, _Watcher] = {}
        rooms.on_presence(self._on_event)

    def _on_event(self, event: PresenceEvent) -> None:
        for watcher in tuple(self.by_room.get(event.entry.room, ())):
            watcher.put(event)

    def watch(self, room: str, consumer: RoomsConsumerMixin) -> None:
        watcher = self.watchers.get(consumer)
        if watcher is None:
            watcher = self.watchers[consumer] = _Watcher(consumer)
            conn = connection_of(consumer.scope)
            if conn is not None:
                conn.on_end(lambda: self.unwatch_all(consumer))
        watcher.rooms.add(room)
        self.by_room.setdefault(room, set()).add(watcher)

    def unwatch(self, room: str, consumer: RoomsConsumerMixin) -> None:
        watcher = self.watchers.get(consumer)
        if watcher is None or room not in watcher.rooms:
            return
        watcher.rooms.discard(room)
        self._drop(room, watcher)
        if not watcher.rooms:
            self.unwatch_all(consumer)

    def unwatch_all(self, consumer: RoomsConsumerMixin) -> None:
        watcher = self.watchers.pop(consumer, None)
        if watcher is None:
            return
        for room in watcher.rooms:
            self._drop(room, watcher)
        watcher.rooms.clear()
        watcher.stop()

    def _drop(self, room: str, watcher: _Watcher) -> None:
        members = self.by_room.get(room)
        if members is not None:
            members.discard(watcher)
            if not members:
                del self.by_room[room]


_RELAYS: weakref.WeakKeyDictionary[Rooms, _PresenceRelay] = weakref.WeakKeyDictionary()


def _relay(rooms: Rooms) -> _PresenceRelay:
    relay = _RELAYS.get(rooms)
    if relay is None:
        relay = _RELAYS[rooms] = _PresenceRelay(rooms)
    return relay


__all__ = ["RoomsConsumerMixin"]
