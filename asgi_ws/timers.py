"""One timer service per event loop, shared by every asgi_ws timer.

Heartbeats, idle timeouts and credential expiry need a deadline per connection. A task per
connection sleeping until its deadline would cost a task (and its frame) for every idle
socket; instead every deadline lives in one heap, and the service keeps exactly one
``loop.call_at`` handle armed for the earliest of them. Deadlines are rounded up to
``resolution`` so that timers falling in the same slice fire in one batch: a timer never
fires early and at most ``resolution`` seconds late.

Callbacks are plain synchronous functions; one that needs I/O schedules it itself. A
callback that raises is logged and does not disturb the others.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import weakref
from collections.abc import Callable

logger = logging.getLogger("asgi_ws.timers")

#: Timers fall into slices of this many seconds; see the module docstring.
DEFAULT_RESOLUTION = 0.05
#: Rebuild the heap once at least this many cancelled timers sit in it (and half of it is cancelled).
_COMPACT_MIN = 512


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

    def _run(self) -> None:
        callback = self._callback
        self.cancelled = True  # fired timers count as done; cancel() becomes a no-op
        self._callback = None
        self._service = None
        if callback is not None:
            callback()


class TimerService:
    """A heap of deadlines on one event loop, served by a single loop handle.

    Args:
        loop: the event loop the timers run on.
        resolution: width in seconds of the slices timers are batched into.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, resolution: float = DEFAULT_RESOLUTION) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self._loop = loop
        self._resolution = resolution
        self._heap: list[tuple[float, int, Timer]] = []
        self._counter = itertools.count()
        self._cancelled = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def time(self) -> float:
        """Return the loop's monotonic clock, the clock every deadline is expressed in."""
        return self._loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` once the loop clock reaches ``when`` (never before)."""
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._counter), timer))
        if self._slice_end(when) < self._armed_at:
            self._arm()
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self._loop.time() + delay, callback)

    def __len__(self) -> int:
        """Number of timers still waiting to fire."""
        return len(self._heap) - self._cancelled

    def _slice_end(self, when: float) -> float:
        return math.ceil(when / self._resolution) * self._resolution

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if self._heap:
            self._armed_at = self._slice_end(self._heap[0][0])
            self._handle = self._loop.call_at(self._armed_at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                self._cancelled -= 1
                continue
            try:
                timer._run()
            except Exception:
                logger.exception("asgi_ws timer callback failed")
        self._arm()

    def _note_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0


_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerService] = weakref.WeakKeyDictionary()


def timer_service() -> TimerService:
    """Return the timer service of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    service = _services.get(loop)
    if service is None:
        service = _services[loop] = TimerService(loop)
    return service


__all__ = ["DEFAULT_RESOLUTION", "Timer", "TimerService", "timer_service"]
