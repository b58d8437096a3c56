"""``memory://``: resumable sessions in this process's memory (one worker, or tests)."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence

from ...delivery import Membership
from ...timers import Timer, timer_service
from .base import (
    EMPTY,
    Entry,
    Run,
    SessionState,
    SessionStore,
    Takeover,
    Write,
    advance,
    check_takeover,
    entries_after,
)


class _Record:
    __slots__ = (
        "cursors",
        "entries",
        "expires_at",
        "first",
        "generation",
        "head",
        "identity",
        "open",
        "owner",
        "rooms",
    )

    def __init__(self, owner: str, identity: str | None) -> None:
        self.owner = owner
        self.identity = identity
        self.generation = 0
        self.head = 0
        self.open = 0
        self.first = 1
        self.entries: deque[Entry] = EMPTY  # a deque from the first entry on
        self.rooms: dict[str, Membership] = {}
        self.cursors: dict[str, str] = {}
        self.expires_at = 0.0

    def state(self, after: int | None = None) -> SessionState:
        entries = entries_after(self.entries, after) if after is not None else []
        return SessionState(
            self.identity,
            self.head,
            self.first,
            dict(self.rooms),
            dict(self.cursors),
            self.generation,
            self.open,
            entries,
        )

    def append(self, entries: Sequence[Entry]) -> None:
        kept = self.entries
        if kept is EMPTY:
            kept = self.entries = deque()
        for seq, item in entries:
            if isinstance(item, Run):
                kept.append((seq, item))
                self.head, self.open = seq - 1, seq
            else:  # frames (an end: none)
                kept.append((seq, item))
                self.head, self.open = seq + len(item) - 1, 0

    def trim(self, keep_from: int) -> None:
        """Drop what is below ``keep_from``: whole entries, and the acknowledged frames of the
        oldest entry kept (the memory is freed frame by frame)."""
        entries = self.entries
        while len(entries) > 1 and entries[1][0] <= keep_from:  # the oldest is wholly below keep_from
            entries.popleft()
        if entries:
            seq, item = entries[0]
            if type(item) is list and seq < keep_from:
                if seq + len(item) <= keep_from:
                    entries.popleft()  # the only entry left, wholly below
                else:
                    entries[0] = (keep_from, item[keep_from - seq :])
        self.first = entries[0][0] if entries else self.head + 1
        if not entries:
            self.entries = EMPTY


class MemorySessionStore(SessionStore):
    """Sessions in this process's memory: resumption across reconnects to the same process.

    A client whose reconnection lands on another worker process, or comes after a restart,
    gets ``unknown_session``: use :class:`~asgi_ws.resume.RedisSessionStore` with several workers.

    An abandoned session (it may hold megabytes of frames) is freed when its window ends, by
    one timer of the loop's timer service armed for the earliest expiry (a heap of expiries,
    each record in it once; a record whose expiry moved on is put back with its new one).
    """

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._expiries: list[tuple[float, int, str, _Record]] = []  # heap: expires_at, tie-break, id, record
        self._order = itertools.count()
        self._timer: Timer | None = None
        self._timer_at = float("inf")
        self._timer_service: object = None  # the loop's timer service the timer is armed on
        self.clock = time.monotonic

    def __len__(self) -> int:
        return len(self._records)

    def _live(self, session_id: str) -> _Record | None:
        record = self._records.get(session_id)
        if record is not None and record.expires_at <= self.clock():
            del self._records[session_id]
            return None
        return record

    def _expire(self) -> None:
        """The timer: free the records whose expiry passed, put back those extended meanwhile."""
        self._timer, self._timer_at = None, float("inf")
        now, heap = self.clock(), self._expiries
        while heap and heap[0][0] <= now:
            _, _, session_id, record = heapq.heappop(heap)
            if self._records.get(session_id) is not record:
                continue  # deleted (its client closed it), or replaced
            if record.expires_at <= now:
                del self._records[session_id]
            else:
                heapq.heappush(heap, (record.expires_at, next(self._order), session_id, record))
        self._arm()

    def _arm(self) -> None:
        """Keep the timer armed for the earliest expiry, on the running loop."""
        if not self._expiries:
            return
        when = self._expiries[0][0]
        service = timer_service()
        if self._timer is not None and self._timer_at <= when and self._timer_service is service:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = service.call_later(max(0.0, when - self.clock()), self._expire)
        self._timer_at, self._timer_service = when, service

    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        record = self._records[session_id] = _Record(owner, identity)
        record.expires_at = self.clock() + ttl
        heapq.heappush(self._expiries, (record.expires_at, next(self._order), session_id, record))
        self._arm()

    async def inspect(self, session_id: str, after: int | None = None) -> SessionState | None:
        record = self._live(session_id)
        return None if record is None else record.state(after)

    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        record = self._live(session_id)
        refused = check_takeover(None if record is None else record.state(), generation, after)
        if refused is not None or record is None:
            return Takeover(refused=refused or "unknown_session")
        record.owner = owner
        record.generation += 1
        record.expires_at = self.clock() + ttl
        return Takeover(record.state(after))

    async def write_many(self, writes: Sequence[Write]) -> Sequence[bool | BaseException | None]:
        return [_settled(self._write, write) for write in writes]  # no coroutine per session

    async def write(self, write: Write) -> bool | None:
        return self._write(write)

    def _write(self, write: Write) -> bool | None:
        record = self._live(write.session_id)
        if record is None:
            return None
        if record.owner != write.owner:
            return False
        if write.entries:
            first = write.entries[0][0]
            if not (first >= record.open if record.open else first == record.head + 1):
                return None
            record.append(write.entries)
        advance(record.cursors, write.cursors)
        if write.rooms is not None:
            record.rooms = dict(write.rooms)
        record.trim(write.keep_from)
        record.expires_at = self.clock() + write.ttl
        return True

    async def read(self, session_id: str, after: int) -> list[Entry]:
        record = self._live(session_id)
        return [] if record is None else entries_after(record.entries, after)

    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, Membership] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        record = self._live(session_id)
        if record is None:
            return None
        if record.owner != owner:
            return False
        record.trim(keep_from)
        if rooms is not None:
            record.rooms = dict(rooms)
        advance(record.cursors, cursors)
        record.expires_at = self.clock() + ttl
        return True

    async def delete(self, session_id: str, owner: str) -> None:
        record = self._records.get(session_id)
        if record is not None and record.owner == owner:
            del self._records[session_id]


def _settled(write: Callable[[Write], bool | None], args: Write) -> bool | BaseException | None:
    """One write's result, or its error: one session's failure is its own."""
    try:
        return write(args)
    except Exception as exc:
        return exc


__all__ = ["MemorySessionStore"]
