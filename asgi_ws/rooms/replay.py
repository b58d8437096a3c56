"""Reading rooms' histories for resumed sessions and ``after=`` subscriptions, coalesced per room.

In a reconnect storm thousands of sessions resume at once, most of them members of the same
few rooms, each owed the room's messages after its own position. Read one by one, every
resume is a broker round trip holding one of the broker's pooled connections, and the pool
runs dry: resumes are refused (``store_unavailable``) for want of a connection, not of data.

So the reads of one room are **single-flight**: at most one broker read per room is in
flight. Requests made meanwhile gather for the next read, which starts as soon as the one in
flight ends, from the **earliest** position any of them asked for; each takes its suffix of
the answer (the messages after its own position). A storm of N resumes of one room costs
about as many reads as the storm lasts read round trips, however large N.

A request never joins a read already sent: that read may have been answered before the
request's member joined the room, so a message published between the two would reach the
member neither live nor from the history. Every read a request gets was sent after it asked.

A request takes a suffix only from a read of its own position's epoch (positions of one
epoch are consecutive, :mod:`asgi_ws.brokers.history`; the suffix after ``"E-b"`` of what
followed ``"E-a"``, ``a <= b``, is exactly what followed ``"E-b"``). A read that found the
history trimmed past its position (None) answers only the requests of that very position;
the others, and those of another epoch, wait for the next read.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from typing import Any

from ..brokers import Broker
from ..brokers.base import position_key
from ..exceptions import BrokerClosed
from . import envelope
from .envelope import EnvelopeError, Kind
from .members import RoomsStats

#: One message of a history as Rooms uses it: position, kind, payload.
Decoded = tuple[str, Kind, bytes]


class _Read:
    """One broker read of a channel's history, and the requests it answers."""

    __slots__ = ("after", "done", "keys", "result")

    def __init__(self, after: str, loop: asyncio.AbstractEventLoop) -> None:
        self.after = after  # the earliest position asked for (position_key order)
        self.done: asyncio.Future[None] = loop.create_future()
        self.result: list[Decoded] | None = None
        self.keys: list[tuple[int, int]] = []

    def lower(self, after: str) -> None:
        if position_key(after) < position_key(self.after):
            self.after = after

    def answer(self, after: str) -> tuple[bool, list[Decoded] | None]:
        """``(True, what followed after)`` when this read tells it; ``(False, None)`` when the
        request must wait for the next read."""
        if after == self.after:
            return True, None if self.result is None else list(self.result)
        if self.result is None or position_key(after)[0] != position_key(self.after)[0]:
            return False, None
        return True, self.result[bisect.bisect_right(self.keys, position_key(after)) :]


class HistoryReads:
    """Coalesced reads of rooms' histories on one broker (see the module docstring).

    Args:
        broker: the broker whose :meth:`~asgi_ws.brokers.Broker.history` is read.
        stats: counts ``history_reads`` (broker reads) and ``history_requests`` (what asked).
        malformed: called with a description and the reason for each history message that is
            not an envelope of this library (left out of the answer).
        spawn: starts the reading task of a channel (Rooms' tasks are cancelled at close).
    """

    def __init__(
        self,
        broker: Broker,
        stats: RoomsStats,
        malformed: Callable[[str, object], None],
        spawn: Callable[[Any], asyncio.Task[Any]],
    ) -> None:
        self.broker = broker
        self.stats = stats
        self._malformed = malformed
        self._spawn = spawn
        self._next: dict[str, _Read] = {}  # channel -> the read the next requests gather for
        self._reading: set[str] = set()  # channels with a read in flight

    async def after(self, channel: str, after: str) -> list[Decoded] | None:
        """What ``channel`` carried after position ``after``, decoded, oldest first; None when the
        broker's history no longer reaches back to it.

        Raises:
            BrokerError: the history cannot be read (every request of that read gets it).
        """
        self.stats.history_requests += 1
        while True:
            read = self._next.get(channel)
            if read is None:
                read = self._next[channel] = _Read(after, asyncio.get_running_loop())
                if channel not in self._reading:
                    self._reading.add(channel)
                    self._spawn(self._run(channel))
            else:
                read.lower(after)
            await asyncio.shield(read.done)  # a cancelled request leaves the read to the others
            answered, entries = read.answer(after)
            if answered:
                return entries

    async def _run(self, channel: str) -> None:
        """Read for the gathered requests, one read at a time, until none is waiting."""
        read: _Read | None = None
        try:
            while (read := self._next.pop(channel, None)) is not None:
                try:
                    read.result, read.keys = await self._read(channel, read.after)
                except Exception as exc:
                    read.done.set_exception(exc)
                    read.done.exception()  # retrieved: the requests raise it, if any is left
                else:
                    read.done.set_result(None)
        finally:  # normally nothing is left; cancelled (Rooms closing), the requests are told
            self._reading.discard(channel)
            for left in (read, self._next.pop(channel, None)):
                if left is not None and not left.done.done():
                    left.done.set_exception(BrokerClosed("the rooms were closed during a history read"))
                    left.done.exception()

    async def _read(self, channel: str, after: str) -> tuple[list[Decoded] | None, list[tuple[int, int]]]:
        self.stats.history_reads += 1
        entries = await self.broker.history(channel, after)
        if entries is None:
            return None, []
        decoded: list[Decoded] = []
        for position, data in entries:
            try:
                kind, body, _, _ = envelope.decode(data)
            except EnvelopeError as exc:  # never delivered live either: the next one's prev tells
                self._malformed(f"a message of the history of {channel!r}", exc)
                continue
            decoded.append((position, kind, body))
        return decoded, [position_key(position) for position, _, _ in decoded]


__all__ = ["Decoded", "HistoryReads"]
