"""One timer service per event loop, shared by every asgi_ws timer.

Heartbeats, idle timeouts and credential expiry need a deadline per connection. A task per
connection sleeping until its deadline would cost a task (and its frame) for every idle
socket; instead every deadline lives in one timer wheel, and the service keeps exactly one
``loop.call_at`` handle armed for the earliest slice. Deadlines are rounded up to
``resolution``: the timers falling in the same slice share one bucket (a list) and fire in
one batch, in deadline order; a timer never fires early and at most ``resolution`` seconds
late.

Setting a timer appends it to its slice's bucket (a heap orders the slices, not the
timers: with 50,000 connections pinged every 20 s, about 400 slices hold 125 timers each),
so the cost of a timer does not grow with the number of timers.

Callbacks are plain synchronous functions; one that needs I/O schedules it itself. A
callback that raises is logged and does not disturb the others.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import weakref
from collections.abc import Callable
from operator import attrgetter

logger = logging.getLogger("asgi_ws.timers")

#: Timers fall into slices of this many seconds; see the module docstring.
DEFAULT_RESOLUTION = 0.05
#: Rebuild the buckets once at least this many cancelled timers sit in them (and half of them are cancelled).
_COMPACT_MIN = 512

_when = attrgetter("when")


class Timer:
    """A scheduled callback; :meth:`cancel` it when it is no longer wanted."""

    __slots__ = ("_callback", "_service", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object], service: TimerService) -> None:
        self.when = when
        self._callback: Callable[[], object] | None = callback
        self._service: TimerService | None = service
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the timer from firing; cancelling twice or after it fired is harmless."""
        if self.cancelled:
            return
        self.cancelled = True
        self._callback = None
        service, self._service = self._service, None
        if service is not None:
            service._note_cancelled()


class TimerService:
    """A wheel of deadline slices on one event loop, served by a single loop handle.

    Args:
        loop: the event loop the timers run on.
        resolution: width in seconds of the slices timers are batched into.
    """

    __slots__ = ("_armed", "_buckets", "_cancelled", "_handle", "_loop", "_resolution", "_size", "_slices")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, resolution: float = DEFAULT_RESOLUTION) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self._loop = loop
        self._resolution = resolution
        #: Slice number (deadline / resolution, rounded up) -> its timers, in the order they were set.
        self._buckets: dict[int, list[Timer]] = {}
        #: Heap of the slice numbers in ``_buckets``.
        self._slices: list[int] = []
        self._size = 0  # timers in the buckets, cancelled ones included
        self._cancelled = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float = math.inf  # the slice number the loop handle fires for

    def time(self) -> float:
        """Return the loop's monotonic clock, the clock every deadline is expressed in."""
        return self._loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` once the loop clock reaches ``when`` (never before)."""
        timer = Timer(when, callback, self)
        number = math.ceil(when / self._resolution)
        bucket = self._buckets.get(number)
        self._size += 1
        if bucket is not None:
            bucket.append(timer)
            return timer
        self._buckets[number] = [timer]
        heapq.heappush(self._slices, number)
        if number < self._armed:
            self._arm()
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self._loop.time() + delay, callback)

    def __len__(self) -> int:
        """Number of timers still waiting to fire."""
        return self._size - self._cancelled

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = math.inf
        if self._slices:
            self._armed = self._slices[0]
            self._handle = self._loop.call_at(self._armed * self._resolution, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
        now = self._loop.time()
        slices, buckets, resolution = self._slices, self._buckets, self._resolution
        # A slice is due once its end is reached: every deadline in it is then past.
        while slices and slices[0] * resolution <= now:
            bucket = buckets.pop(heapq.heappop(slices))
            self._size -= len(bucket)
            if len(bucket) > 1:
                bucket.sort(key=_when)
            for timer in bucket:
                callback = timer._callback
                if callback is None:  # cancelled
                    self._cancelled -= 1
                    continue
                timer.cancelled = True  # fired timers count as done; cancel() becomes a no-op
                timer._callback = timer._service = None
                try:
                    callback()
                except Exception:
                    logger.exception("asgi_ws timer callback failed")
        self._arm()

    def _note_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 > self._size:
            for number in list(self._buckets):
                kept = [timer for timer in self._buckets[number] if not timer.cancelled]
                if kept:
                    self._buckets[number] = kept
                else:
                    del self._buckets[number]
            self._slices = list(self._buckets)
            heapq.heapify(self._slices)
            self._size = sum(len(bucket) for bucket in self._buckets.values())
            self._cancelled = 0
            if self._armed not in self._buckets:
                self._arm()


_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerService] = weakref.WeakKeyDictionary()


def timer_service() -> TimerService:
    """Return the timer service of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    service = _services.get(loop)
    if service is None:
        service = _services[loop] = TimerService(loop)
    return service


__all__ = ["DEFAULT_RESOLUTION", "Timer", "TimerService", "timer_service"]
