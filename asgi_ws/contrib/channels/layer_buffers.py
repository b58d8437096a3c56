"""The receiving side of a :class:`~asgi_ws.contrib.channels.BrokerChannelLayer` on one event
loop: the buffers of this process's channels, their capacity and expiry, ``receive()``, and the
direct :class:`ChannelReader` of :class:`~asgi_ws.contrib.channels.LeanDispatchMixin` consumers.

- A channel of this process (``prefix.<node>!suffix``, from ``new_channel``), or a general name
  it listens on, is an :class:`Inbox`: a bounded deque of ``(expires_at, encoded message)`` and
  the futures of the ``receive()`` calls waiting on it. A message leaves the deque only inside a
  ``receive()`` (or :meth:`ChannelReader.take`) that returns it, with no ``await`` in between: a
  cancelled ``receive()`` takes nothing.
- An unread message older than ``expiry`` is dropped, and its channel leaves its groups.

:class:`Buffers` is the base of :class:`~asgi_ws.contrib.channels.layer_core.Core`, which adds
the broker and the groups: it provides :meth:`Buffers.listen` (subscribing to a general name)
and :meth:`Buffers.leave_later` (a membership ending), the two things the buffers ask of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...exceptions import BrokerClosed
from . import layer_wire as wire
from .layer_state import Report

if TYPE_CHECKING:
    from .layer import BrokerChannelLayer


class Inbox:
    """The buffer of one channel in this process, and the ``receive()`` calls waiting on it.

    ``listener``: a consumer reading the buffer directly (:class:`ChannelReader`), called
    after every message put in it (it takes them itself, when it is ready).
    """

    __slots__ = ("capacity", "general", "groups", "items", "listener", "name", "used_at", "waiters")

    def __init__(self, name: str, capacity: int, general: bool) -> None:
        self.name = name
        self.capacity = capacity
        self.general = general  # a general name (no "!"): this process listens on its broker channel
        self.items: collections.deque[tuple[float, bytes]] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.groups: set[str] = set()
        self.used_at = 0.0
        self.listener: Callable[[], None] | None = None

    def put(self, payload: bytes, expires: float) -> bool:
        """Buffer ``payload``, wake one waiting ``receive()`` and the listener; False when full."""
        items = self.items
        if len(items) >= self.capacity:
            return False
        items.append((expires, payload))
        if self.waiters:
            self.wake()
        if self.listener is not None:
            self.listener()
        return True

    def wake(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Buffers:
    """The inboxes of one event loop's share of a layer (see the module docstring)."""

    def __init__(self, layer: BrokerChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.node = layer.node
        self.stats = layer.stats
        self.clock: Callable[[], float] = layer._clock
        self.expiry = float(layer.expiry)
        self.unpack = layer.codec.unpack
        self.inboxes: dict[str, Inbox] = {}
        self.report = Report(loop, layer.log_interval)
        self.closed = False

    # -- what the broker side provides (Core) ------------------------------------------------------

    async def listen(self, name: str) -> Inbox:
        """Buffer what is sent to the general channel ``name`` from now on (subscribe to it)."""
        raise NotImplementedError

    def leave_later(self, group: str, channel: str) -> None:
        """Take ``channel`` out of ``group``, from where no await is possible."""
        raise NotImplementedError

    # -- the buffers ---------------------------------------------------------------------------------

    def inbox(self, name: str, general: bool = False) -> Inbox:
        inbox = self.inboxes.get(name)
        if inbox is None:
            inbox = self.inboxes[name] = Inbox(name, self.layer.get_capacity(name), general)
            inbox.used_at = self.clock()
        return inbox

    def release(self, inbox: Inbox) -> None:
        """Forget an inbox nobody needs: empty, nobody waiting, in no group (general ones: see sweep)."""
        unused = (
            not inbox.items and not inbox.waiters and not inbox.groups and not inbox.general and inbox.listener is None
        )
        if unused and self.inboxes.get(inbox.name) is inbox:
            del self.inboxes[inbox.name]

    def offer(self, inbox: Inbox, payload: bytes, expires: float) -> bool:
        """Buffer ``payload`` in ``inbox``; when full, first drop what expired there."""
        if inbox.put(payload, expires) or (self.purge(inbox, self.clock()) and inbox.put(payload, expires)):
            self.stats.delivered += 1
            return True
        return False

    def purge(self, inbox: Inbox, now: float) -> int:
        """Drop the expired messages at the head of ``inbox``; its channel leaves its groups (an
        unread message waited ``expiry`` seconds: the consumer is presumed gone)."""
        items, count = inbox.items, 0
        while items and items[0][0] <= now:
            items.popleft()
            count += 1
        if count:
            self.stats.expired += count
            self.report.add("expired", count, f"channel {inbox.name!r}")
            if inbox.groups:
                groups, inbox.groups = inbox.groups, set()
                for name in groups:
                    self.leave_later(name, inbox.name)
                self.stats.memberships_expired += len(groups)
                self.report.add("left", len(groups), f"{inbox.name!r} from group {next(iter(groups))!r}")
        return count

    def deliver(self, name: str, payload: bytes, create: bool = False) -> None:
        """A message for channel ``name`` of this process came from the broker (or a group's forward)."""
        inbox = self.inboxes.get(name)
        if inbox is None:
            if not create and wire.owner_of(name) is None:
                self.unroutable(f"general channel {name!r}, listened to no more")
                return
            inbox = self.inbox(name, general=wire.owner_of(name) is None)
        if not self.offer(inbox, payload, self.clock() + self.expiry):
            self.release(inbox)
            self.stats.dropped_full += 1
            self.report.add("full", 1, f"channel {name!r}")

    def unroutable(self, what: str) -> None:
        self.stats.unroutable += 1
        self.report.add("unroutable", 1, what)

    def listening(self, name: str) -> bool:
        inbox = self.inboxes.get(name)
        return inbox is not None and inbox.general

    # -- reading -------------------------------------------------------------------------------------

    async def receive(self, name: str) -> dict[str, Any]:
        inbox = self.inboxes.get(name)
        if inbox is None:
            owner = wire.owner_of(name)
            if owner is None:
                inbox = await self.listen(name)
            elif owner == self.node:
                inbox = self.inbox(name)
            else:
                raise ValueError(f"channel {name!r} was not made by this layer's new_channel(): it never arrives here")
        items = inbox.items
        while True:
            if items:
                if items[0][0] <= self.clock():
                    self.purge(inbox, self.clock())
                    continue
                payload = items.popleft()[1]  # from here to the return, no await: nothing is lost
                if inbox.general:
                    inbox.used_at = self.clock()
                elif not items:
                    self.release(inbox)
                return self.unpack(payload)  # type: ignore[no-any-return]
            current = self.inboxes.get(name)
            if current is not inbox:  # released meanwhile (its last messages expired): wait where sends go
                if current is not None:
                    inbox, items = current, current.items
                    continue
                self.inboxes[name] = inbox
            waiter = self.loop.create_future()
            inbox.waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    inbox.wake()  # woken, then cancelled before running: wake the next receiver instead
                else:
                    with contextlib.suppress(ValueError):
                        inbox.waiters.remove(waiter)
                self.release(inbox)
                raise

    def reader(self, name: str, listener: Callable[[], None]) -> ChannelReader:
        """Read this process's channel ``name`` directly (see :class:`ChannelReader`)."""
        inbox = self.inbox(name)
        if inbox.listener is not None:
            raise RuntimeError(f"channel {name!r} already has a reader")
        inbox.listener = listener
        return ChannelReader(self, inbox)

    # -- sweep, flush, close -----------------------------------------------------------------------------

    def sweep_buffers(self, now: float) -> list[str]:
        """Drop expired messages; forget the general names idle for ``expiry`` seconds and
        return them (the broker side unsubscribes them)."""
        idle = []
        for inbox in list(self.inboxes.values()):
            if inbox.items:
                self.purge(inbox, now)
            if inbox.general and not inbox.items and not inbox.waiters and now - inbox.used_at > self.expiry:
                del self.inboxes[inbox.name]
                idle.append(inbox.name)
            else:
                self.release(inbox)
        return idle

    def drop_buffers(self) -> None:
        """Drop every buffered message and every channel's groups (a flush)."""
        for inbox in list(self.inboxes.values()):
            inbox.items.clear()
            inbox.groups.clear()
            self.release(inbox)  # general names stay listened to until idle (sweep)

    def close_buffers(self) -> None:
        """Wake every waiting ``receive()`` and reader with BrokerClosed, and forget the buffers."""
        listeners = []
        for inbox in self.inboxes.values():
            for waiter in inbox.waiters:
                if not waiter.done():
                    waiter.set_exception(BrokerClosed("the channel layer was closed"))
            if inbox.listener is not None:
                listeners.append(inbox.listener)
        self.inboxes.clear()
        for listener in listeners:  # their readers raise BrokerClosed once they find nothing left
            listener()


class ChannelReader:
    """A consumer's direct read of its own channel, instead of a ``receive()`` call per message.

    The inbox calls the listener given to :meth:`Buffers.reader` after each message it buffers;
    the consumer takes messages with :meth:`take` when it is ready for one. Messages stay in
    the buffer until taken (capacity, expiry and ``ChannelFull`` as for ``receive()``), and
    a message leaves it only inside :meth:`take`, which does not await: a consumer cancelled
    at any point loses nothing buffered, and :meth:`close` leaves what is left to ``receive()``.
    """

    __slots__ = ("_core", "_inbox", "name")

    def __init__(self, core: Buffers, inbox: Inbox) -> None:
        self._core = core
        self._inbox = inbox
        self.name = inbox.name

    def take(self) -> dict[str, Any] | None:
        """The channel's next message, or None when nothing is buffered.

        Raises:
            BrokerClosed: the layer was closed on this loop (as a waiting ``receive()`` would).
        """
        inbox, core = self._inbox, self._core
        items = inbox.items
        while items:
            if items[0][0] <= core.clock():
                core.purge(inbox, core.clock())
                continue
            return core.unpack(items.popleft()[1])  # type: ignore[no-any-return]
        if core.closed:
            raise BrokerClosed("the channel layer was closed")
        return None

    def ready(self) -> bool:
        """Whether :meth:`take` has something to say (a message, or that the layer closed)."""
        return bool(self._inbox.items) or self._core.closed

    def close(self) -> None:
        """Stop reading: what is left in the buffer stays for ``receive()`` (or expires)."""
        inbox = self._inbox
        if inbox.listener is not None:
            inbox.listener = None
            if not self._core.closed:
                self._core.release(inbox)


__all__ = ["Buffers", "ChannelReader", "Inbox"]
