"""A session's pending log: what it numbered but may not send yet.

A message may be written to the socket once every entry of the session's log at or before its
seq is stored (docs/internals.md, "Numbering"). :class:`PendingLog` keeps the entries not yet
stored (those the flusher has not taken, and the first seq of those it is storing), the
numbered messages waiting behind them, the memberships and cursors to write with the next
entries, and the bounds of the stored frames a resume may still need (``max_messages``,
``max_bytes``, acknowledgements), from which each write's ``keep_from`` follows.
"""

from __future__ import annotations

import collections

from ..delivery import Membership
from ..types import Message
from .frames import Frame
from .stores.base import EMPTY, Entry, Run, Write

#: Frames stored by one store call at most (Redis scripts take a bounded argument list).
MAX_BATCH = 4000


class PendingLog:
    """The pending entries and waiting messages of one session."""

    __slots__ = (
        "_acked",
        "_floor",
        "_inflight",
        "_items",
        "_retained",
        "_retained_bytes",
        "cursors",
        "max_bytes",
        "max_messages",
        "rooms",
        "unsent",
        "unsent_seq",
    )

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: list[Entry] = []  # entries not yet taken by the flusher
        self._inflight: int | None = None  # first seq of the entries being stored, if any
        #: Memberships to write with the next entries (None: unchanged), rooms' cursors moved.
        self.rooms: dict[str, Membership] | None = None
        self.cursors: dict[str, str] | None = None
        #: Numbered messages waiting for an entry to be stored; the first has seq ``unsent_seq``.
        self.unsent: collections.deque[Message] = EMPTY
        self.unsent_seq = 0
        # Stored frames not yet acknowledged: (seq, size), for the bounds.
        self._retained: collections.deque[tuple[int, int]] = EMPTY
        self._retained_bytes = 0
        self._acked = 0
        self._floor = 1  # seqs below it were dropped for the bounds

    # -- what is added ----------------------------------------------------------------------

    def frame(self, seq: int, frame: Frame, message: Message) -> None:
        """Message ``seq`` is stored in full (frames of consecutive seqs share an entry), and
        waits for it. The application's every send comes here: kept short."""
        items = self._items
        frames = items[-1][1] if items else None
        if type(frames) is list and items[-1][0] + len(frames) == seq and len(frames) < MAX_BATCH:
            frames.append(frame)
        else:
            items.append((seq, [frame]))
        unsent = self.unsent
        if not unsent:
            self.unsent_seq = seq
            if unsent is EMPTY:
                unsent = self.unsent = collections.deque()
        unsent.append(message)

    def run(self, seq: int, run: Run) -> None:
        """The seqs from ``seq`` on are the messages of a room's run."""
        self._items.append((seq, run))

    def end(self, seq: int) -> None:
        """The run before ``seq`` ends (its room was left)."""
        self._items.append((seq, []))

    def cursor(self, room: str, position: str) -> None:
        if self.cursors is None:
            self.cursors = {}
        self.cursors[room] = position

    @property
    def dirty(self) -> bool:
        """Something is to be written."""
        return bool(self._items) or self.rooms is not None or self.cursors is not None

    def unstored(self) -> int | None:
        """The first seq of an entry not stored yet (taken or not), or None."""
        if self._inflight is not None:
            return self._inflight
        return self._items[0][0] if self._items else None

    def wait(self, seq: int, message: Message) -> bool:
        """Keep message ``seq`` until the entries before it are stored; False when none is
        pending (it may be sent now)."""
        if not self.unsent and self.unstored() is None:
            return False
        if not self.unsent:
            self.unsent_seq = seq
            if self.unsent is EMPTY:
                self.unsent = collections.deque()
        self.unsent.append(message)
        return True

    # -- the flusher's round ------------------------------------------------------------------

    def take(self, session_id: str, owner: str, ttl: float) -> Write:
        """The next write: entries (at most ``MAX_BATCH`` frames), memberships, cursors."""
        items: list[Entry] = []
        frames = 0
        while self._items and frames < MAX_BATCH:
            entry = self._items.pop(0)
            items.append(entry)
            if type(entry[1]) is list:
                frames += len(entry[1])
                self._retain(entry[0], entry[1])
        write = Write(session_id, owner, items, self.keep_from(), ttl, self.cursors, self.rooms)
        self.rooms = self.cursors = None
        self._inflight = items[0][0] if items else None
        return write

    def stored(self, seq: int) -> list[Message]:
        """The taken entries are stored: the waiting messages no unstored entry precedes
        (``seq``: the newest numbered)."""
        self._inflight = None
        unsent = self.unsent
        if not unsent:
            return []
        unstored = self.unstored()
        count = min(len(unsent), (unstored if unstored is not None else seq + 1) - self.unsent_seq)
        if count <= 0:
            return []
        if count == len(unsent):
            released = list(unsent)
            self.unsent = EMPTY
        else:
            released = [unsent.popleft() for _ in range(count)]
        self.unsent_seq += count
        return released

    def failed(self) -> None:
        """The write failed or was refused: nothing more will be stored."""
        self._inflight = None
        self._items.clear()
        self.unsent = EMPTY

    @property
    def busy(self) -> bool:
        """Entries wait to be stored, or messages behind them."""
        return bool(self._items) or self._inflight is not None or bool(self.unsent)

    # -- the bounds of what a resume may still need ----------------------------------------------

    def _retain(self, seq: int, frames: list[Frame]) -> None:
        """Record stored frames; the oldest beyond the bounds are dropped (``keep_from`` passes them)."""
        retained = self._retained
        if retained is EMPTY:
            retained = self._retained = collections.deque()
        sizes = list(map(len, frames))
        retained.extend(zip(range(seq, seq + len(sizes)), sizes, strict=True))
        self._retained_bytes += sum(sizes)
        while retained and (len(retained) > self.max_messages or self._retained_bytes > self.max_bytes):
            dropped, size = retained.popleft()
            self._retained_bytes -= size
            self._floor = dropped + 1

    def keep_from(self) -> int:
        """The oldest seq a resume may still need."""
        return max(self._acked + 1, self._floor)

    def ack(self, seq: int) -> None:
        """The client has every frame up to ``seq``: they need not be kept."""
        if seq > self._acked:
            self._acked = seq
        retained = self._retained
        while retained and retained[0][0] <= seq:
            self._retained_bytes -= retained.popleft()[1]
        if not retained:
            self._retained = EMPTY  # an idle session holds no deque


__all__ = ["MAX_BATCH", "PendingLog"]
