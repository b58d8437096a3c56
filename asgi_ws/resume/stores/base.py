"""The session store interface: what a resumable session keeps, and the one rule of a takeover.

A session's log is a list of **entries**, each starting at a seq (docs/internals.md,
"Numbering: stored frames and room runs"):

- a list of frames: the messages with seqs ``seq``, ``seq + 1``..., stored in full (an empty
  list is an *end*: it closes the run before it and covers no seq);
- a :class:`Run`: the seqs from ``seq`` on are the messages of a room that follow a position
  of its history, one each, until the next entry; the last entry's run goes on for as long as
  the session stays in the room.

Frames and run starts are written **before** the messages they cover are sent, so whatever a
client may have received can be produced again, even after the process that sent it died
(with a store shared by the processes: :class:`~asgi_ws.resume.stores.redis.RedisSessionStore`).

Exactly one connection owns a session at a time. A resume first *inspects* the session
(nothing changes), and only a resume that will succeed *takes it over*: one atomic step that
checks the token's generation and the client's count again, makes the claimant the owner and
advances the generation. From then on the previous owner's writes are refused as *replaced*;
a write to a session the store no longer has is refused as *lost* (flushed, evicted, expired).
Records expire ``ttl`` seconds after their last write, so abandoned sessions cost nothing.
"""

from __future__ import annotations

import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...brokers.base import position_key
from ...delivery import Membership
from ..frames import Frame


@dataclass(frozen=True, slots=True)
class Run:
    """Seqs from the entry's on are the messages of ``room`` after position ``after``, in order.

    Attributes:
        room: the room.
        after: the position of the room's message before the run's first.
        format: the member format the messages were sent in (``raw``/``channel``).
    """

    room: str
    after: str
    format: str


#: One entry of a session's log: its first seq, and its frames (an empty list: an end) or run.
Entry = tuple[int, "list[Frame] | Run"]


class Write(NamedTuple):
    """One ownership-checked write of a session (:meth:`SessionStore.write`)."""

    session_id: str
    owner: str
    entries: Sequence[Entry]  # in seq order, continuing the session's log
    keep_from: int  # the oldest seq to keep (older entries are dropped when wholly below it)
    ttl: float
    cursors: dict[str, str] | None = None  # rooms' positions reached, moved forward only
    rooms: dict[str, Membership] | None = None  # the memberships, replaced when given


@dataclass(slots=True)
class SessionState:
    """A session as the store has it: enough to decide whether and how a resume can be honoured."""

    identity: str | None
    head: int  # seq of the newest entry's last message whose extent is known (0: none yet)
    first: int  # seq of the oldest entry kept (head + 1 when none is kept)
    rooms: dict[str, Membership] = field(default_factory=dict)
    cursors: dict[str, str] = field(default_factory=dict)  # room -> position of its newest numbered message
    generation: int = 0  # advanced by every takeover; a resume token names the one it may take over
    open: int = 0  # first seq of the last entry when it is a run (it goes on), else 0
    entries: list[Entry] = field(default_factory=list)  # when asked for: from the one holding after + 1


@dataclass(slots=True)
class Takeover:
    """What :meth:`SessionStore.take_over` returns: the session as taken over (its new
    generation, its entries after the client's count); or, with nothing changed, why not."""

    state: SessionState | None = None
    #: ``unknown_session``, ``token_used`` (the generation moved on), ``seq_ahead``, ``gap_too_old``.
    refused: str | None = None


def check_takeover(state: SessionState | None, generation: int, after: int) -> str | None:
    """Why a resume with a token of ``generation`` and a count of ``after`` cannot take ``state``
    over (a :attr:`Takeover.refused` code), or None. The Redis store's script mirrors it.

    A count inside the open run cannot be checked here (the run's length is the room's
    history): the resume checks it against the history."""
    if state is None:
        return "unknown_session"
    if state.generation != generation:
        # An older generation: the token was used by an earlier resume. A newer one: the store
        # lost the takeover that issued it (a failover); either way it is not this session's.
        return "token_used" if generation < state.generation else "unknown_session"
    if after > state.head and not state.open:
        return "seq_ahead"
    if after < state.first - 1:
        return "gap_too_old"
    return None


def extents(entries: Sequence[Entry], state: SessionState) -> list[tuple[int, int | None, list[Frame] | Run]]:
    """``(first, last, item)`` of each entry: its seqs are ``first..last`` (``last`` None: the
    open run goes on; ``last = first - 1``: an end, or an empty run)."""
    spans: list[tuple[int, int | None, list[Frame] | Run]] = []
    for index, (seq, item) in enumerate(entries):
        if index + 1 < len(entries):
            last: int | None = entries[index + 1][0] - 1
        elif isinstance(item, Run):
            last = None if state.open == seq else state.head
        else:
            last = seq + len(item) - 1
        spans.append((seq, last, item))
    return spans


def encode_rooms(rooms: dict[str, Membership]) -> str:
    """The memberships as stored: ``{room: [format, meta, watch]}``."""
    return json.dumps({room: [m.format, m.meta, m.watch] for room, m in rooms.items()}, separators=(",", ":"))


def decode_rooms(data: str | bytes | None) -> dict[str, Membership]:
    """The memberships stored by :func:`encode_rooms` (or by an earlier version: ``{room: format}``)."""
    if not data:
        return {}
    rooms: dict[str, Membership] = {}
    for room, value in json.loads(data).items():
        if isinstance(value, str):
            rooms[room] = Membership(value, {})
        else:
            rooms[room] = Membership(str(value[0]), dict(value[1]), bool(value[2]))
    return rooms


def advance(cursors: dict[str, str], updates: dict[str, str] | None) -> None:
    """Move the rooms' cursors forward only (a touch may carry older ones than a write)."""
    for room, position in (updates or {}).items():
        current = cursors.get(room)
        if current is None or position_key(position) > position_key(current):
            cursors[room] = position


class SessionStore(ABC):
    """Storage of resumable sessions; one instance is shared by every connection of a process.

    Every method may raise :class:`OSError`-like errors of its backend; callers turn them
    into ``store_unavailable``. The writes that check ownership (:meth:`write`, :meth:`touch`)
    return True when done, False when another owner took the session over (the socket closes
    with 4409), None when the store no longer has it (4404).
    """

    @abstractmethod
    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        """Record a new session owned by ``owner``, generation 0."""

    @abstractmethod
    async def inspect(self, session_id: str, after: int | None = None) -> SessionState | None:
        """The session's state, changing nothing (not its owner, not its expiry); None if
        unknown. With ``after``, its entries from the one holding seq ``after + 1`` on."""

    @abstractmethod
    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        """Atomically: if the session is at ``generation`` and holds every seq after ``after``
        (:func:`check_takeover`), make ``owner`` its owner, advance its generation, extend its
        expiry and return its state with its entries from the one holding ``after + 1``;
        otherwise change nothing and say why (:attr:`Takeover.refused`)."""

    @abstractmethod
    async def write(self, write: Write) -> bool | None:
        """Append ``write.entries`` (the first must continue the log: follow its newest known
        seq, or fall inside its open run), drop entries wholly below ``keep_from``, move the
        rooms' cursors forward, replace the memberships if given; atomically.

        Returns True; or, writing nothing, False when ``owner`` no longer owns the session (it
        was resumed elsewhere), None when the session is gone (expired, flushed, evicted) or
        is not the one this owner wrote (the entries do not continue its log).
        """

    async def write_many(self, writes: Sequence[Write]) -> Sequence[bool | BaseException | None]:
        """Several :meth:`write` calls (of different sessions) at once, results in order; an
        error of one is returned in its place, never raised for all. Stores with I/O make it
        one round trip."""
        results: list[bool | BaseException | None] = []
        for write in writes:
            try:
                results.append(await self.write(write))
            except Exception as exc:
                results.append(exc)
        return results

    @abstractmethod
    async def read(self, session_id: str, after: int) -> list[Entry]:
        """The entries from the one holding seq ``after + 1`` on, oldest first."""

    @abstractmethod
    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, Membership] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        """Extend the expiry, drop entries below ``keep_from``, record ``rooms`` and ``cursors``
        (merged, forward only) if given; False when ``owner`` no longer owns the session, None
        when the session is gone."""

    @abstractmethod
    async def delete(self, session_id: str, owner: str) -> None:
        """Forget the session (its client closed it for good), if ``owner`` still owns it."""

    async def close(self) -> None:  # noqa: B027 - optional: stores without connections keep it
        """Release the store's connections."""


#: The stand-in for an empty deque, shared (read only: ``len``, truth, iteration, indexing):
#: a real deque is made on the first append, and dropped when it empties. An empty deque is
#: 760 bytes with its first block; an idle resumable connection held four.
EMPTY: Any = ()


def entries_after(entries: Sequence[Entry], after: int) -> list[Entry]:
    """The entries from the one holding seq ``after + 1`` on (all of them when ``after + 1``
    comes before the first)."""
    start = 0
    for index, (seq, _) in enumerate(entries):
        if seq <= after + 1:
            start = index
        else:
            break
    return list(itertools.islice(entries, start, None))


__all__ = [
    "EMPTY",
    "Entry",
    "Run",
    "SessionState",
    "SessionStore",
    "Takeover",
    "Write",
    "advance",
    "check_takeover",
    "decode_rooms",
    "encode_rooms",
    "entries_after",
    "extents",
]
