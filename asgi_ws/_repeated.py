"""One way to log a line that a client or the network can repeat many times a second.

A drain refuses every newcomer with 503, a connection cap refuses a flood, a broker that
sends garbage sends it for every message, a session store that is down fails every
session's renewal: logging each occurrence buries everything else in the log (and costs the
server more than the event itself). :class:`RepeatedLog` writes the first occurrence at once,
counts the ones that follow, and writes one line per ``interval`` for them, the latest
occurrence with how many others it stands for::

    127.0.0.1:50712 - "WebSocket /ws" refused by asgi_ws drain: 503 server shutting down
    127.0.0.1:50954 - "WebSocket /ws" refused by asgi_ws drain: 503 server shutting down (498 more
    like this in the last 60 s)

The summary is written when the next occurrence comes after the interval, or by a timer on
the running event loop at the end of the interval, or at the latest when the process exits
(:func:`flush_all` runs at exit). Occurrences
are grouped by a ``key`` (a call site, or a few bounded values such as a status and a reason):
never put a client-chosen value in a key.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

#: Where occurrences go once a RepeatedLog tracks ``max_keys`` keys that are all busy.
_OVERFLOW = object()


class _State:
    __slots__ = ("args", "count", "handle", "level", "logged_at", "msg")

    def __init__(self, logged_at: float) -> None:
        self.logged_at = logged_at  # when the last line of this key was written
        self.count = 0  # occurrences since, not written yet
        self.level = logging.WARNING  # the latest of them
        self.msg = ""
        self.args: tuple[Any, ...] = ()
        self.handle: asyncio.TimerHandle | None = None


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


class RepeatedLog:
    """Log a line at once, then at most one line per ``interval`` seconds summarising its repeats.

    Args:
        logger: the logger to write to.
        interval: seconds between two lines of one key.
        clock: monotonic seconds (tests pass a fake clock).
        max_keys: keys tracked at most; beyond, new keys share one (occurrences are still
            counted, never dropped silently).

    Thread-safe: brokers and the channel layer call it from several event loops.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._states: dict[Hashable, _State] = {}
        self._lock = threading.Lock()
        _ALL.add(self)

    def warning(self, msg: str, *args: Any, key: Hashable = None) -> bool:
        """:meth:`log` at WARNING."""
        return self.log(logging.WARNING, msg, *args, key=key)

    def log(self, level: int, msg: str, *args: Any, key: Hashable = None) -> bool:
        """Write ``msg % args`` now, or count it for the next summary of ``key``.

        Returns True when a line was written. ``args`` are positional (``%s`` style); they
        are kept, not formatted, until a line is written.
        """
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        with self._lock:
            state = self._state(key, now)
            if state is None:  # first of its key, or the key was quiet for an interval
                line: tuple[str, tuple[Any, ...]] | None = (msg, args)
            elif now - state.logged_at >= self.interval:
                line = self._summary(state, msg, args, state.count, now)
            else:
                state.count += 1
                state.level, state.msg, state.args = level, msg, args
                if state.handle is None:
                    state.handle = self._arm(key, state.logged_at + self.interval - now)
                line = None
        if line is None:
            return False
        self.logger.log(level, line[0], *line[1])
        return True

    def _state(self, key: Hashable, now: float) -> _State | None:
        """The state of a busy key, or None for a key whose occurrence is written at once."""
        state = self._states.get(key)
        if state is not None:
            if state.count or now - state.logged_at < self.interval:
                return state
            state.logged_at = now  # quiet for an interval: written, a new interval starts
            return None
        if len(self._states) >= self.max_keys:
            self._forget_quiet(now)
            if len(self._states) >= self.max_keys and key is not _OVERFLOW:
                return self._state(_OVERFLOW, now)
        self._states[key] = _State(now)
        return None

    def _summary(
        self, state: _State, msg: str, args: tuple[Any, ...], more: int, now: float
    ) -> tuple[str, tuple[Any, ...]]:
        """The line for ``msg % args`` standing for ``more`` other occurrences; the key starts a new interval."""
        elapsed = now - state.logged_at
        state.logged_at, state.count = now, 0
        state.msg, state.args = "", ()
        if state.handle is not None:
            state.handle.cancel()
            state.handle = None
        if more <= 0:
            return msg, args
        return f"{msg} (%d more like this in the last %s s)", (*args, more, _seconds(elapsed))

    def _arm(self, key: Hashable, delay: float) -> asyncio.TimerHandle | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here: the next occurrence (or the exit) writes the summary
            return None
        return loop.call_later(max(delay, 0.0), self._flush_key, key)

    def _flush_key(self, key: Hashable) -> None:
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return
            state.handle = None
            if not state.count:
                return
            level = state.level
            line = self._summary(state, state.msg, state.args, state.count - 1, self.clock())
        self.logger.log(level, line[0], *line[1])

    def _forget_quiet(self, now: float) -> None:
        for key in [k for k, s in self._states.items() if not s.count and now - s.logged_at >= self.interval]:
            del self._states[key]

    def flush(self) -> None:
        """Write the summaries of every key now (at shutdown)."""
        for key in list(self._states):
            self._flush_key(key)

    def reset(self) -> None:
        """Forget every key without writing anything (tests)."""
        with self._lock:
            for state in self._states.values():
                if state.handle is not None:
                    state.handle.cancel()
            self._states.clear()


_ALL: weakref.WeakSet[RepeatedLog] = weakref.WeakSet()


def flush_all() -> None:
    """Write the pending summary of every RepeatedLog (run at exit)."""
    for repeated in list(_ALL):
        with contextlib.suppress(Exception):  # at exit, a closed stream must not hide the rest
            repeated.flush()


def reset_all() -> None:
    """Forget what every RepeatedLog counted (between tests)."""
    for repeated in list(_ALL):
        repeated.reset()


# Registered after logging's own exit hook, so it runs first: the handlers are still open.
atexit.register(flush_all)

__all__ = ["RepeatedLog", "flush_all", "reset_all"]
