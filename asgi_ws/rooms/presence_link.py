"""Presence over the broker: the I/O around :class:`~asgi_ws.rooms.presence.PresenceTracker`.

The tracker decides (sans I/O); this link does the rest for one Rooms instance: it flushes the
tracker's pending joins and leaves :data:`FLUSH_DELAY` seconds (at most a quarter of the beat
interval) after the first of them, as one delta message per room, so a mass connect is a few
broker messages, not one per join; it queues the tracker's messages and publishes them from
one task (bounded: during a broker outage the
oldest wait and the newest are dropped, and peers resynchronise from the sequence gap), beats
every ``interval`` seconds, feeds the tracker what arrives on the presence channel, and tells
of each change the callbacks (:meth:`Rooms.on_presence <asgi_ws.Rooms.on_presence>`) and the
connections that watch the room (``presence_diff`` control frames, :meth:`Rooms.join
<asgi_ws.Rooms.join>` with ``watch=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from .._repeated import RepeatedLog
from ..brokers import Broker
from ..outbound import Outbound
from ..protocol import encode
from .presence import PresenceEvent, PresenceTracker

logger = logging.getLogger("asgi_ws.rooms")

PresenceCallback = Callable[[PresenceEvent], object]
#: Presence messages waiting to be published at most (a broker outage); beyond, they are
#: dropped, and the other nodes resynchronise from the sequence gap.
MAX_PENDING_PRESENCE = 10_000
#: Seconds this node's presence changes gather before they are published (at most a quarter
#: of the beat interval): every change of a room in that time is one broker message.
FLUSH_DELAY = 0.25


class PresenceLink:
    """The presence channel of one Rooms instance.

    Args:
        broker: the Rooms' broker.
        channel: the presence channel.
        tracker: the node's tracker.
        interval: seconds between beats.
        repeated: where lines a broker outage repeats are aggregated (shared with Rooms).
        watchers: ``watchers(room)``: the outbound paths of the local connections watching ``room``.
    """

    def __init__(
        self,
        broker: Broker,
        channel: str,
        tracker: PresenceTracker,
        interval: float,
        repeated: RepeatedLog,
        watchers: Callable[[str], Iterable[Outbound]],
    ) -> None:
        self.broker = broker
        self.channel = channel
        self.tracker = tracker
        self.interval = interval
        self.repeated = repeated
        self.watchers = watchers
        self.callbacks: list[PresenceCallback] = []
        #: Messages waiting to be published (None until started).
        self.out: asyncio.Queue[dict[str, Any]] | None = None
        self.flush_delay = min(FLUSH_DELAY, interval / 4)
        self._flush_handle: asyncio.TimerHandle | None = None

    async def start(self, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        """Subscribe to the presence channel, start the sender and the beats, say hello."""
        self.out = asyncio.Queue(MAX_PENDING_PRESENCE)
        await self.broker.subscribe(self.channel)
        spawn(self._sender())
        spawn(self._beats())
        self.queue(self.tracker.hello())
        self._flush_soon()  # joins made before the start

    async def goodbye(self) -> None:
        """Tell the other nodes this one leaves: they drop its members at once."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.broker.publish(self.channel, _dumps({"t": "x", "n": self.tracker.node})), 2)

    def resync(self) -> None:
        """After a broker outage: we may have missed others' changes, and they ours."""
        self.queue([*self.tracker.hello(), self.tracker.state()])

    def join(self, room: str, member: str, user: str | None, meta: dict[str, Any]) -> None:
        out, event = self.tracker.join(room, member, user, meta)
        self.queue(out)
        self._flush_soon()
        self.emit([event])

    def leave(self, room: str, member: str) -> None:
        out, event = self.tracker.leave(room, member)
        self.queue(out)
        self._flush_soon()
        self.emit([event] if event else [])

    def _flush_soon(self) -> None:
        if self._flush_handle is None and self.out is not None and self.tracker.pending:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a leave outside the loop (at the very end): what is pending goes now
                self.flush()
                return
            self._flush_handle = loop.call_later(self.flush_delay, self.flush)

    def flush(self) -> None:
        """Publish this node's pending changes now: one delta message per room."""
        handle, self._flush_handle = self._flush_handle, None
        if handle is not None:
            handle.cancel()
        self.queue(self.tracker.flush())

    def queue(self, messages: list[dict[str, Any]]) -> None:
        out = self.out
        if out is None:
            return
        for message in messages:
            try:
                out.put_nowait(message)
            except asyncio.QueueFull:
                self.repeated.warning(
                    "presence backlog full (broker down?): a message was dropped; peers will resync", key="backlog"
                )

    def receive(self, payload: bytes, malformed: Callable[[object], None]) -> None:
        """A message of the presence channel; ``malformed(reason)`` for one that is not JSON."""
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
            malformed(exc)
            return
        out, events = self.tracker.receive(message, time.monotonic())  # checks every field
        self.queue(out)
        self.emit(events)

    def emit(self, events: list[PresenceEvent]) -> None:
        for event in events:
            watchers = self.watchers(event.entry.room)
            if watchers:
                entry = event.entry
                change = {"member": entry.member, "user": entry.user, "meta": entry.meta}
                frame = encode("presence_diff", {"channel": entry.room, event.kind: change})  # once for all
                for outbound in watchers:
                    outbound.send_control(frame)  # never raises: a broken watcher fails alone
            for callback in list(self.callbacks):
                try:
                    callback(event)
                except Exception:
                    logger.exception("presence callback failed")

    async def _sender(self) -> None:
        assert self.out is not None
        while True:
            message = await self.out.get()
            try:
                await self.broker.publish(self.channel, _dumps(message))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker outage: the sequence gap makes peers resync later
                logger.debug("presence message not published: %r", exc)

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            out, events = self.tracker.beat(time.monotonic())
            self.queue(out)
            self.emit(events)


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = ["FLUSH_DELAY", "MAX_PENDING_PRESENCE", "PresenceCallback", "PresenceLink"]
