"""Where resumable sessions keep what they sent: the interface, and the in-process store.

A session's log holds every data frame the server sent it, numbered from 1, from the oldest
the client has not acknowledged to the newest. Frames are stored **before** they are written
to the socket, so whatever the client may have received can be replayed, even after the
process that sent it died (with a store shared by the processes: ``RedisSessionStore``).

Exactly one connection owns a session at a time. A resume first *inspects* the session
(nothing changes), and only a resume that will succeed *takes it over*: one atomic step that
checks the token's generation and the client's count again, makes the claimant the owner and
advances the generation. From then on the previous owner's writes are refused as *replaced*,
which is how a socket resumed elsewhere learns it must close; a write to a session the store
no longer has is refused as *lost* (flushed, evicted, expired), a different story for the
client. Records expire ``ttl`` seconds after their last write, so abandoned sessions cost nothing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..brokers.base import position_key
from ..timers import Timer, timer_service

#: A stored frame: ``b"t"`` + UTF-8 text or ``b"b"`` + bytes.
Frame = bytes


def frame_of(message: Mapping[str, Any]) -> Frame:
    """The stored form of a ``websocket.send`` message.

    Raises :class:`UnicodeEncodeError` for text that is not valid Unicode (a lone surrogate):
    no socket could send it, so a session refuses it at the sender's call, before numbering.

    A room's fan-out offers one message object to every member: the last one converted is
    remembered, so a broadcast to 5,000 resumable members encodes it once, not 5,000 times.
    """
    global _last_payload, _last_frame
    payload = message.get("text")
    if payload is None:
        payload = message.get("bytes")
    # The payload object itself (str and bytes are immutable; a dict may be reused and changed).
    if payload is _last_payload and payload is not None and not isinstance(payload, (bytearray, memoryview)):
        return _last_frame
    frame = _last_frame = _frame_of(message)
    _last_payload = payload  # kept alive: no other object can take its identity meanwhile
    return frame


_last_payload: Any = None
_last_frame: Frame = b""


def _frame_of(message: Mapping[str, Any]) -> Frame:
    text = message.get("text")
    if text is not None:
        return b"t" + str(text).encode("utf-8")
    data = message.get("bytes")
    return b"b" + bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else b"b"


def message_of(frame: Frame) -> dict[str, Any]:
    """The ``websocket.send`` message of a stored frame."""
    if frame[:1] == b"t":
        return {"type": "websocket.send", "text": frame[1:].decode("utf-8", "surrogatepass")}
    return {"type": "websocket.send", "bytes": frame[1:]}


#: The arguments of one :meth:`SessionStore.append`: session id, owner, first seq, frames,
#: keep_from, ttl, cursors.
Append = tuple[str, str, int, Sequence[bytes], int, float, "dict[str, str] | None"]


@dataclass(slots=True)
class SessionState:
    """A session as the store has it: enough to decide whether and how a resume can be honoured."""

    identity: str | None
    head: int  # seq of the newest stored frame (0: none yet)
    first: int  # seq of the oldest retained frame (head + 1 when none is retained)
    rooms: dict[str, str] = field(default_factory=dict)  # room -> member format
    cursors: dict[str, str] = field(default_factory=dict)  # room -> position of its newest stored message
    generation: int = 0  # advanced by every takeover; a resume token names the one it may take over


@dataclass(slots=True)
class Takeover:
    """What :meth:`SessionStore.take_over` returns: the session as taken over (its new
    generation) and its frames after the client's count; or, with nothing changed, why not."""

    state: SessionState | None = None
    frames: list[Frame] = field(default_factory=list)
    #: ``unknown_session``, ``token_used`` (the generation moved on), ``seq_ahead``, ``gap_too_old``.
    refused: str | None = None


def check_takeover(state: SessionState | None, generation: int, after: int) -> str | None:
    """Why a resume with a token of ``generation`` and a count of ``after`` cannot take ``state``
    over (a :attr:`Takeover.refused` code), or None. The Redis store's script mirrors it."""
    if state is None:
        return "unknown_session"
    if state.generation != generation:
        # An older generation: the token was used by an earlier resume. A newer one: the store
        # lost the takeover that issued it (a failover); either way it is not this session's.
        return "token_used" if generation < state.generation else "unknown_session"
    if after > state.head:
        return "seq_ahead"
    if after < state.first - 1:
        return "gap_too_old"
    return None


class SessionStore(ABC):
    """Storage of resumable sessions; one instance is shared by every connection of a process.

    Every method may raise :class:`OSError`-like errors of its backend; callers turn them
    into ``store_unavailable``. The writes that check ownership (:meth:`append`,
    :meth:`touch`) return True when done, False when another owner took the session over
    (the socket closes with 4409), None when the store no longer has it (4404).
    """

    @abstractmethod
    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        """Record a new session owned by ``owner``, generation 0."""

    @abstractmethod
    async def inspect(self, session_id: str) -> SessionState | None:
        """The session's state, changing nothing (not its owner, not its expiry); None if unknown."""

    @abstractmethod
    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        """Atomically: if the session is at ``generation`` and holds every frame after seq
        ``after`` (:func:`check_takeover`), make ``owner`` its owner, advance its generation,
        extend its expiry and return its state with the frames after ``after``; otherwise
        change nothing and say why (:attr:`Takeover.refused`)."""

    @abstractmethod
    async def append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        """Store ``frames`` as seqs ``first_seq...``; drop those below ``keep_from``; record the
        rooms' positions these frames reach (``cursors``), atomically with them.

        Returns True; or, storing nothing, False when ``owner`` no longer owns the session (it
        was resumed elsewhere), None when the session is gone (expired, flushed, evicted) or
        is not the one this owner wrote (``first_seq`` does not follow its newest frame).
        """

    async def append_many(self, appends: Sequence[Append]) -> Sequence[bool | BaseException | None]:
        """Several :meth:`append` calls (of different sessions) at once, results in order; an
        error of one is returned in its place, never raised for all. Stores with I/O make it
        one round trip."""
        results: list[bool | BaseException | None] = []
        for append in appends:
            try:
                results.append(await self.append(*append))
            except Exception as exc:
                results.append(exc)
        return results

    @abstractmethod
    async def read(self, session_id: str, after: int) -> list[Frame]:
        """The stored frames with a seq above ``after``, oldest first."""

    @abstractmethod
    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, str] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        """Extend the expiry, drop frames below ``keep_from``, record ``rooms`` and ``cursors``
        (rooms' positions, merged) if given; False when ``owner`` no longer owns the session,
        None when the session is gone."""

    @abstractmethod
    async def delete(self, session_id: str, owner: str) -> None:
        """Forget the session (its client closed it for good), if ``owner`` still owns it."""

    async def close(self) -> None:  # noqa: B027 - optional: stores without connections keep it
        """Release the store's connections."""


class _Record:
    __slots__ = ("cursors", "expires_at", "first", "frames", "generation", "identity", "owner", "rooms")

    def __init__(self, owner: str, identity: str | None) -> None:
        self.owner = owner
        self.identity = identity
        self.generation = 0
        self.first = 1
        self.frames: deque[Frame] = deque()
        self.rooms: dict[str, str] = {}
        self.cursors: dict[str, str] = {}
        self.expires_at = 0.0

    @property
    def head(self) -> int:
        return self.first + len(self.frames) - 1

    def state(self) -> SessionState:
        return SessionState(self.identity, self.head, self.first, dict(self.rooms), dict(self.cursors), self.generation)


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

    async def inspect(self, session_id: str) -> SessionState | None:
        record = self._live(session_id)
        return None if record is None else record.state()

    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        record = self._live(session_id)
        refused = check_takeover(None if record is None else record.state(), generation, after)
        if refused is not None or record is None:
            return Takeover(refused=refused or "unknown_session")
        record.owner = owner
        record.generation += 1
        record.expires_at = self.clock() + ttl
        return Takeover(record.state(), list(record.frames)[after + 1 - record.first :])

    async def append_many(self, appends: Sequence[Append]) -> Sequence[bool | BaseException | None]:
        return [_settled(self._append, append) for append in appends]  # no coroutine per session

    async def append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        return self._append(session_id, owner, first_seq, frames, keep_from, ttl, cursors)

    def _append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        record = self._live(session_id)
        if record is None:
            return None
        if record.owner != owner:
            return False
        if first_seq != record.head + 1:
            return None
        record.frames.extend(frames)
        _advance(record.cursors, cursors)
        _trim(record, keep_from)
        record.expires_at = self.clock() + ttl
        return True

    async def read(self, session_id: str, after: int) -> list[Frame]:
        record = self._live(session_id)
        if record is None:
            return []
        start = max(0, after + 1 - record.first)
        return list(record.frames)[start:]

    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, str] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        record = self._live(session_id)
        if record is None:
            return None
        if record.owner != owner:
            return False
        _trim(record, keep_from)
        if rooms is not None:
            record.rooms = dict(rooms)
        _advance(record.cursors, cursors)
        record.expires_at = self.clock() + ttl
        return True

    async def delete(self, session_id: str, owner: str) -> None:
        record = self._records.get(session_id)
        if record is not None and record.owner == owner:
            del self._records[session_id]


def _settled(write: Callable[..., bool | None], append: Append) -> bool | BaseException | None:
    """One append's result, or its error: one session's failure is its own."""
    try:
        return write(*append)
    except Exception as exc:
        return exc


def _advance(cursors: dict[str, str], updates: dict[str, str] | None) -> None:
    """Move the rooms' cursors forward only (a touch may carry older ones than an append)."""
    for room, position in (updates or {}).items():
        current = cursors.get(room)
        if current is None or position_key(position) > position_key(current):
            cursors[room] = position


def _trim(record: _Record, keep_from: int) -> None:
    frames = record.frames
    while record.first < keep_from and frames:
        frames.popleft()
        record.first += 1


def store_from_url(url: str) -> SessionStore:
    """``memory://`` or ``redis://...`` (``rediss://``), as for brokers."""
    from ..exceptions import ConfigurationError

    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemorySessionStore()
    if scheme in ("redis", "rediss"):
        try:
            from .redis_store import RedisSessionStore
        except ImportError as exc:  # redis-py missing
            from ..exceptions import MissingDependencyError

            raise MissingDependencyError(
                f"the {scheme}:// session store needs redis-py: pip install 'asgi-ws[redis]'"
            ) from exc
        return RedisSessionStore(url)
    raise ConfigurationError(f"unknown session store URL scheme {scheme!r}: use memory:// or redis://")


__all__ = [
    "Append",
    "Frame",
    "MemorySessionStore",
    "SessionState",
    "SessionStore",
    "Takeover",
    "check_takeover",
    "frame_of",
    "message_of",
    "store_from_url",
]
