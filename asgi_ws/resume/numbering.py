"""The message engine of a resumable session: numbering, storing before sending, handing over.

The wire carries no sequence numbers: the client counts the data frames it receives (control
frames excluded), and the server numbers them the same way, so the n-th data frame of a
session is seq n on both sides. Resumption therefore costs application messages nothing in
size, and plain clients are never involved.

A session is its connection's delivery sink (:mod:`asgi_ws.delivery`), and the application's
``send`` for data frames. Each message gets the next seq, and must be storable or recoverable
before it is written to the socket (docs/internals.md, "Numbering"):

- a room message that continues the session's open run (same room, ``prev`` the last
  position numbered there) is in the room's history already: written at once, no store write;
- anything else starts an entry of the session's log (a run, or frames stored in full), which
  the middleware's one :class:`~asgi_ws.resume.flusher.SessionFlusher` stores with every other
  session's in one store call a round; the message and those after it wait for it.

A numbered message is never dropped by a queue policy: the connection's policy becomes
``block`` (falling back to closing with 1013), and the client resumes from the last frame it
really received. The application does not wait for the store unless ``max_pending`` messages
wait (then its ``send`` waits: backpressure).

:class:`~asgi_ws.resume.session.Session` adds the rest of a session's life (memberships,
tokens and renewals, its end, the steps of a resume) to this engine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from .._repeated import RepeatedLog
from ..brokers.base import position_key
from ..close_codes import CloseCode
from ..delivery import Membership, RoomMark
from ..outbound import SLOW
from ..types import Message
from .frames import Frame, frame_of
from .pending import MAX_BATCH, PendingLog
from .stores.base import EMPTY, Run, SessionStore, Write

if TYPE_CHECKING:
    from ..connection import Connection
    from .flusher import SessionFlusher
    from .tokens import TokenSigner

logger = logging.getLogger("asgi_ws.resume")
#: A store outage fails every session at once: its lines at once, then at most one a minute each.
store_trouble = RepeatedLog(logger, 60.0)


class _Batch:
    """Entries taken from a session for one store call."""

    __slots__ = ("write",)

    def __init__(self, write: Write) -> None:
        self.write = write


class SessionLimits:
    """Bounds of one session's retained frames and of its waiting messages."""

    __slots__ = ("max_bytes", "max_messages", "max_pending", "window")

    def __init__(self, window: float, max_messages: int, max_bytes: int, max_pending: int) -> None:
        self.window = window
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_pending = max_pending


class Numbering:
    """The message engine of one resumable session (:class:`~asgi_ws.resume.session.Session` is
    the whole session).

    Attributes:
        id: the session id.
        resumed: True when this connection resumed an earlier session.
        seq: seq of the last data frame numbered.
        rooms: room -> :class:`~asgi_ws.delivery.Membership`, restored by a resume.
    """

    __slots__ = (
        "__weakref__",
        "_direct",
        "_drained",
        "_handing",
        "_held",
        "_live_hold",
        "_log",
        "_marked",
        "_open",
        "_open_last",
        "_out",
        "_paused",
        "_storing",
        "_waiters",
        "_waiting_cap",
        "_write_now",
        "conn",
        "cursors",
        "detached",
        "flusher",
        "generation",
        "id",
        "identity",
        "limits",
        "offered",
        "owner",
        "resumed",
        "rooms",
        "seq",
        "signer",
        "store",
    )

    def __init__(
        self,
        conn: Connection,
        flusher: SessionFlusher,
        signer: TokenSigner,
        limits: SessionLimits,
        session_id: str,
        owner: str,
        identity: str | None,
        *,
        resumed: bool = False,
        generation: int = 0,
    ) -> None:
        self.conn = conn
        self.flusher = flusher
        self.store: SessionStore = flusher.store
        self.signer = signer
        self.limits = limits
        self.id = session_id
        self.owner = owner
        self.identity = identity
        self.resumed = resumed
        #: The session's generation in the store, named by the tokens this connection hands out.
        self.generation = generation
        #: Seq of the last message numbered, and of the last handed to the socket (or counted
        #: as such: the socket ended, the message stays recoverable).
        self.seq = self.offered = 0
        self.rooms: dict[str, Membership] = {}
        #: room -> position of the newest message numbered there (rooms left or interrupted),
        #: or where the membership began: where a resume fills the room's gap from.
        self.cursors: dict[str, str] = {}
        self.detached = False
        #: The open run: its room, and the position of its last message numbered.
        self._open: str | None = None
        self._open_last = ""
        self._log = PendingLog(limits.max_messages, limits.max_bytes)
        self._waiting_cap = 4 * limits.max_pending
        self._marked = False  # waiting in the flusher's next round
        self._storing = False  # a batch is being stored
        self._paused = False  # resuming: nothing is written before the takeover
        self._waiters: list[asyncio.Future[None]] | None = None
        self._drained: asyncio.Future[None] | None = None  # finish() waits for the last store
        # Messages waiting for room in the outbound queue, and the task handing them over.
        self._out: collections.deque[Message] = EMPTY
        self._handing: asyncio.Task[None] | None = None
        #: While a resume replays, messages released by the store wait here, behind the replay.
        self._held: list[Message] | None = None
        #: While a resume fills the rooms' gaps, live room messages wait here, unnumbered.
        self._live_hold: list[tuple[Message, RoomMark | None]] | None = None
        self._write_now = conn.outbound.write_now
        self._direct = True  # the fast path of deliver() may be taken

    # -- the sink: what Rooms hands over -------------------------------------------------------

    def deliver(self, message: Message, mark: RoomMark | None = None, /) -> bool:
        """A room message (the connection's delivery sink). Never raises, never awaits."""
        if mark is not None and self._direct and mark[2] == self._open_last and mark[0] == self._open:
            # The open run goes on, and nothing waits: the room's history keeps the message.
            self.seq += 1
            self._open_last = mark[1]
            try:
                if self._write_now(message) != SLOW:
                    self.offered += 1
                    return True
            except (OSError, RuntimeError):  # the socket broke; the run keeps the message for a resume
                self.offered += 1
                return True
            self._wait_for_room([message])
            return True
        return self._deliver(message, mark)

    def _deliver(self, message: Message, mark: RoomMark | None) -> bool:
        if self.detached:
            return False
        if self._live_hold is not None:  # resuming: numbered once the rooms' gaps are filled
            self._live_hold.append((message, mark))
            return True
        membership = self.rooms.get(mark[0]) if mark is not None else None
        if mark is None or membership is None:  # nowhere else to be found: stored in full
            try:
                frame = frame_of(message)
            except UnicodeEncodeError as exc:
                logger.warning("session %s: not delivering a room message: %s", self.id, exc)
                return False
            return self._number_frame(message, frame)
        if self._too_many():
            return False
        room, position, prev = mark
        if room != self._open or prev != self._open_last:  # a new run starts here...
            last = self._open_last if room == self._open else self.cursors.get(room)
            if last and position_key(position) <= position_key(last):
                # ...unless the message is one this session numbered already: a resume filled
                # the room's gap from the history while its live delivery was still on the way.
                return True
            self.seq += 1
            self._close_open()
            self._log.run(self.seq, Run(room, prev, membership.format))
            self._open = room
            self._mark()
        else:
            self.seq += 1
        self._open_last = position
        self._queue(message)
        return True

    # -- the application's send ----------------------------------------------------------------

    def send(self, message: Message) -> Any:
        """The application's ``send`` for data frames: returns an awaitable, as ASGI requires.

        Raises:
            UnicodeEncodeError: at the application's call, for text no socket could send.
        """
        if self.detached:
            return self.conn._done
        self._number_frame(message, frame_of(message))
        if len(self._log.unsent) < self.limits.max_pending:
            return self.conn._done
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        return waiter

    def _number_frame(self, message: Message, frame: Frame) -> bool:
        """Number a message stored in full (it waits for its entry); False when the session
        gave up (too much waits). The application's every send comes here: kept short."""
        log = self._log
        if len(log.unsent) + len(self._out) >= self._waiting_cap and self._too_many():
            return False
        if self._open is not None:
            self._close_open()
        self.seq = seq = self.seq + 1
        log.frame(seq, frame, message)
        self._direct = False
        if not self._marked and not self._paused:
            self._marked = True
            self.flusher.mark(self)
        return True

    def _too_many(self) -> bool:
        """Fan-out cannot wait: a member whose waiting messages reach ``4 * max_pending`` (its
        client or the store cannot keep up) is closed with 1013, and resumes."""
        if len(self._log.unsent) + len(self._out) >= self._waiting_cap and not self.conn.ended:
            self._give_up(CloseCode.TRY_AGAIN_LATER, "slow consumer")
            return True
        return False

    def _close_open(self) -> None:
        """The open run ends: its room's cursor is the last position numbered there."""
        room = self._open
        if room is not None:
            self._open = None
            self.cursors[room] = self._open_last
            self._log.cursor(room, self._open_last)

    def _queue(self, message: Message) -> None:
        """The message just numbered waits for the entries before it, or goes on at once."""
        self._direct = False
        if self._log.wait(self.seq, message):
            return
        if self._held is not None:
            self._held.append(message)
        else:
            self.hand_over([message])

    def _mark(self) -> None:
        if not self._marked and not self._paused:
            self._marked = True
            self.flusher.mark(self)

    def _update_direct(self) -> None:
        self._direct = not (
            self._log.busy or self._out or self._held is not None or self._live_hold is not None or self.detached
        )

    # -- storing (the flusher's rounds) -----------------------------------------------------------

    def take(self) -> _Batch | None:
        """The flusher's round: the next batch of entries, and how to store it."""
        self._marked = False
        if self.detached or self._paused or not self._log.dirty:
            return None
        self._storing = True
        return _Batch(self._log.take(self.id, self.owner, self.limits.window))

    def stored_batch(self, batch: _Batch, result: bool | BaseException | None) -> list[Message] | None:
        """The flusher stored ``batch`` (``True``), was refused (``False``: the session was taken
        over elsewhere; ``None``: the store lost it) or failed; returns the messages to
        :meth:`hand_over` now, if any."""
        self._storing = False
        if isinstance(result, BaseException):
            store_trouble.log(  # one line a minute with a count: a store outage fails every session at once
                logging.ERROR,
                "session %s: could not store outgoing messages (%s): closing",
                self.id,
                result,
                key="store",
            )
            self._give_up(CloseCode.TRY_AGAIN_LATER, "session store unavailable")
            return None
        if result is not True:
            self._refused(result)
            return None
        released = self._log.stored(self.seq)
        if self._log.dirty:  # more than one batch, or new ones
            self._mark()
        else:
            self._wake(self._drained_waiters())
        if self._waiters is not None and len(self._log.unsent) < self.limits.max_pending:
            waiters, self._waiters = self._waiters, None
            self._wake(waiters)
        if self._held is not None:
            self._held.extend(released)
            return None
        if not released:
            self._update_direct()
        return released

    def keep_from(self) -> int:
        """The oldest seq a resume may still need."""
        return self._log.keep_from()

    def _drained_waiters(self) -> list[asyncio.Future[None]]:
        drained, self._drained = self._drained, None
        return [drained] if drained is not None else []

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- handing over to the socket ---------------------------------------------------------------

    def hand_over(self, messages: list[Message]) -> None:
        """Give numbered messages to the outbound path in order; once its queue is full (its
        policy is ``block``, falling back to closing with 1013: never a dropped frame), the rest
        wait in ``_out`` for one task that awaits room."""
        if self._out:
            self._out.extend(messages)
            return
        conn, write_now = self.conn, self._write_now
        for index, message in enumerate(messages):
            if conn.ended or conn.closing:
                self.offered += len(messages) - index  # recoverable: the client gets them by resuming
                break
            try:
                if write_now(message) == SLOW:
                    self._wait_for_room(messages[index:])
                    return
            except (OSError, RuntimeError):
                pass  # the socket broke; the connection ends, the messages stay recoverable
            self.offered += 1
        self._update_direct()

    def _wait_for_room(self, messages: list[Message]) -> None:
        if self._out is EMPTY:
            self._out = collections.deque()
        self._out.extend(messages)
        self._direct = False
        if self._handing is None:
            self._handing = asyncio.get_running_loop().create_task(self._hand_over_slowly())

    async def _hand_over_slowly(self) -> None:
        outbound, out = self.conn.outbound, self._out
        try:
            while out:
                message = out[0]
                if not (self.conn.ended or self.conn.closing):
                    with contextlib.suppress(OSError, RuntimeError):  # the connection is ending
                        await outbound.send(message)  # block, then 1013: the outbound's policy
                out.popleft()
                self.offered += 1
        finally:
            self._handing = None
            if not self._out:
                self._out = EMPTY
            self._update_direct()

    # -- refusals -------------------------------------------------------------------------------

    def _refused(self, result: bool | None) -> None:
        """The store refused a write: another socket took the session over (4409), or the
        store no longer has it (4404: flushed, evicted, expired; the client starts afresh)."""
        if result is None:
            store_trouble.warning("session %s: the store lost it: closing with 4404", self.id, key="lost")
            self._give_up(CloseCode.SESSION_LOST, "session lost by the store")
        else:
            self._give_up(CloseCode.SESSION_REPLACED, "session resumed on another connection")

    def _give_up(self, code: int, reason: str) -> None:
        self.detached = True
        self._direct = False
        self._log.failed()
        self._wake([*self._drained_waiters(), *(self._waiters or ())])
        self._waiters = None
        self.conn.close(code, reason)


__all__ = ["MAX_BATCH", "Numbering", "SessionLimits", "store_trouble"]
