"""Lifecycle events of a client: what happened to its connection, for logs, metrics and UIs.

Events are reported two ways: to the ``on_event`` callback given to
:func:`~asgi_ws.client.connect`, and to every :meth:`~asgi_ws.client.Client.events`
iterator. ``closed`` is always the last event of a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger("asgi_ws.client")

EventKind = Literal[
    "connected",  # a connection opened (the first one, or a reconnection)
    "disconnected",  # a connection ended: code, reason
    "reconnecting",  # the client waits delay seconds before attempt number attempt: code, reason of the failure
    "resumed",  # the server resumed the session and replays what was missed: detail is the resumed message
    "resume_failed",  # the session could not be resumed (code, reason): the application must resync
    "session_lost",  # the server's store lost the session (close 4404): reconnecting with a new one; resync
    "gave_up",  # max_attempts reconnection attempts failed: attempt, code, reason, exception
    "error",  # the server sent an error control message, or resumed at another count (resume_mismatch)
    "control",  # another control message for the application (presence_diff...): detail
    "closed",  # the client stopped for good: code, reason, exception (None after close())
]


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle event.

    Attributes:
        kind: what happened (see :data:`EventKind`).
        code: close code (int) for ``disconnected``, ``reconnecting``, ``session_lost``,
            ``gave_up`` and ``closed``; protocol code (str) for ``error`` and ``resume_failed``.
        reason: close reason or the server's explanation.
        attempt: reconnection attempt number (1-based) for ``reconnecting`` and ``gave_up``.
        delay: seconds the client waits before that attempt (``reconnecting``).
        detail: the control message behind the event (``resumed``, ``error``, ``control``).
        exception: the failure behind ``reconnecting``, ``gave_up`` or ``closed``, if any.
    """

    kind: EventKind
    code: int | str | None = None
    reason: str | None = None
    attempt: int | None = None
    delay: float | None = None
    detail: Mapping[str, Any] | None = None
    exception: BaseException | None = None


class EventStream:
    """An async iterator over a client's events, from the moment it was created until ``closed``.

    It holds at most ``maxlen`` events the consumer has not read yet; past that the oldest
    is dropped, counted in :attr:`dropped` and logged once, so a forgotten stream never
    grows without bound.
    """

    def __init__(self, maxlen: int = 1000) -> None:
        self._items: deque[Event] = deque()
        self._maxlen = maxlen
        self._wakeup = asyncio.Event()
        self._ended = False
        #: Events dropped because the consumer was too far behind.
        self.dropped = 0

    def push(self, event: Event) -> None:
        if self._ended:
            return
        if len(self._items) >= self._maxlen:
            self._items.popleft()
            if not self.dropped:
                logger.warning("asgi_ws client: an events() iterator is not read; dropping its oldest events")
            self.dropped += 1
        self._items.append(event)
        if event.kind == "closed":
            self._ended = True
        self._wakeup.set()

    def end(self) -> None:
        self._ended = True
        self._wakeup.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()


class Emitter:
    """Hands each event to the ``on_event`` callback and to every open :class:`EventStream`."""

    def __init__(self, on_event: Callable[[Event], object] | None = None) -> None:
        self._on_event = on_event
        self._streams: list[EventStream] = []
        self._ended = False

    def stream(self, maxlen: int) -> EventStream:
        """A new stream of the events from now on (ended at once when the emitter ended)."""
        stream = EventStream(maxlen)
        if self._ended:
            stream.end()
        else:
            self._streams.append(stream)
        return stream

    def emit(self, kind: EventKind, **fields: Any) -> None:
        event = Event(kind, **fields)
        for stream in self._streams:
            stream.push(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("asgi_ws client: the on_event callback failed on %s", kind)

    def end(self) -> None:
        """No event comes any more: every stream ends once read."""
        self._ended = True
        for stream in self._streams:
            stream.end()
        self._streams.clear()


__all__ = ["Emitter", "Event", "EventKind", "EventStream"]
