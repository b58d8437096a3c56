"""Where resumable sessions keep what they sent: the interface, and the in-process store.

A session's log holds every data frame the server sent it, numbered from 1, from the oldest
the client has not acknowledged to the newest. Frames are stored **before** they are written
to the socket, so whatever the client may have received can be replayed, even after the
process that sent it died (with a store shared by the processes: ``RedisSessionStore``).

Exactly one connection owns a session at a time. Claiming it (a resume) makes the claimant
the owner atomically; from then on the previous owner's appends are refused, which is how a
socket that was resumed elsewhere learns it must close. Records expire ``ttl`` seconds after
their last write, so abandoned sessions cost nothing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..brokers.base import position_key

#: A stored frame: ``b"t"`` + UTF-8 text or ``b"b"`` + bytes.
Frame = bytes


def frame_of(message: Mapping[str, Any]) -> Frame:
    """The stored form of a ``websocket.send`` message.

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
        return b"t" + str(text).encode("utf-8", "surrogatepass")
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
    """What a claim returns: enough to decide whether and how a resume can be honoured."""

    identity: str | None
    head: int  # seq of the newest stored frame (0: none yet)
    first: int  # seq of the oldest retained frame (head + 1 when none is retained)
    rooms: dict[str, str] = field(default_factory=dict)  # room -> member format
    cursors: dict[str, str] = field(default_factory=dict)  # room -> position of its newest stored message


class SessionStore(ABC):
    """Storage of resumable sessions; one instance is shared by every connection of a process.

    Every method may raise :class:`OSError`-like errors of its backend; callers turn them
    into ``store_unavailable``.
    """

    @abstractmethod
    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        """Record a new session owned by ``owner``."""

    @abstractmethod
    async def claim(self, session_id: str, owner: str, ttl: float) -> SessionState | None:
        """Make ``owner`` the session's owner; None if the session is unknown or expired."""

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
    ) -> bool:
        """Store ``frames`` as seqs ``first_seq...``; drop those below ``keep_from``; record the
        rooms' positions these frames reach (``cursors``), atomically with them.

        Returns False, storing nothing, when ``owner`` no longer owns the session (it was
        resumed elsewhere) or the session expired.
        """

    async def append_many(self, appends: Sequence[Append]) -> Sequence[bool | BaseException]:
        """Several :meth:`append` calls (of different sessions) at once, results in order; an
        error of one is returned in its place. Stores with I/O make it one round trip."""
        results: list[bool | BaseException] = []
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
    ) -> bool:
        """Extend the expiry, drop frames below ``keep_from``, record ``rooms`` and ``cursors``
        (rooms' positions, merged) if given; False when ``owner`` no longer owns the session."""

    @abstractmethod
    async def delete(self, session_id: str, owner: str) -> None:
        """Forget the session (its client closed it for good), if ``owner`` still owns it."""

    async def close(self) -> None:  # noqa: B027 - optional: stores without connections keep it
        """Release the store's connections."""


class _Record:
    __slots__ = ("cursors", "expires_at", "first", "frames", "identity", "owner", "rooms")

    def __init__(self, owner: str, identity: str | None) -> None:
        self.owner = owner
        self.identity = identity
        self.first = 1
        self.frames: deque[Frame] = deque()
        self.rooms: dict[str, str] = {}
        self.cursors: dict[str, str] = {}
        self.expires_at = 0.0

    @property
    def head(self) -> int:
        return self.first + len(self.frames) - 1


class MemorySessionStore(SessionStore):
    """Sessions in this process's memory: resumption across reconnects to the same process.

    A client whose reconnection lands on another worker process, or comes after a restart,
    gets ``unknown_session``: use :class:`~asgi_ws.resume.RedisSessionStore` with several workers.
    """

    #: Expired records are swept every this many creations.
    SWEEP_EVERY = 1000

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._created = 0
        self.clock = time.monotonic

    def __len__(self) -> int:
        return len(self._records)

    def _live(self, session_id: str) -> _Record | None:
        record = self._records.get(session_id)
        if record is not None and record.expires_at <= self.clock():
            del self._records[session_id]
            return None
        return record

    def _sweep(self) -> None:
        now = self.clock()
        for session_id in [s for s, r in self._records.items() if r.expires_at <= now]:
            del self._records[session_id]

    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        self._created += 1
        if self._created % self.SWEEP_EVERY == 0:
            self._sweep()
        record = self._records[session_id] = _Record(owner, identity)
        record.expires_at = self.clock() + ttl

    async def claim(self, session_id: str, owner: str, ttl: float) -> SessionState | None:
        record = self._live(session_id)
        if record is None:
            return None
        record.owner = owner
        record.expires_at = self.clock() + ttl
        return SessionState(record.identity, record.head, record.first, dict(record.rooms), dict(record.cursors))

    async def append_many(self, appends: Sequence[Append]) -> Sequence[bool | BaseException]:
        return [self._append(*append) for append in appends]  # no coroutine per session

    async def append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool:
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
    ) -> bool:
        record = self._live(session_id)
        if record is None or record.owner != owner or first_seq != record.head + 1:
            return False
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
    ) -> bool:
        record = self._live(session_id)
        if record is None or record.owner != owner:
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
    "frame_of",
    "message_of",
    "store_from_url",
]
