"""One resumable session on one connection: numbering, storing before sending, acks, renewal.

The wire carries no sequence numbers: the client counts the data frames it receives (control
frames excluded), and the server numbers them the same way, so the n-th data frame of a
session is seq n on both sides. Resumption therefore costs application messages nothing in
size, and plain clients are never involved.

Every data frame goes through :meth:`Session.offer`: it is encoded (text that no socket could
send, a lone surrogate, is refused there, at the sender's call), gets the next seq and joins
the pending batch; the middleware's one :class:`~asgi_ws.resume.flusher.SessionFlusher` stores the batches
of every session with frames pending in one store call a round, and only then are a session's
frames handed, in order, to its connection's outbound path. The application does not wait for the store unless the
pending batch grows past ``max_pending`` (then its ``send`` waits: backpressure).
A stored frame is never dropped by a queue policy: the connection's queue policy becomes
``block`` (falling back to closing with 1013), and the client resumes from the last frame it
really received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from .._repeated import RepeatedLog
from ..brokers.base import position_key
from ..close_codes import CloseCode
from ..outbound import SLOW
from ..types import Message
from .store import Append, SessionStore, frame_of, message_of

if TYPE_CHECKING:
    from ..connection import Connection
    from .flusher import SessionFlusher
    from .tokens import TokenSigner

logger = logging.getLogger("asgi_ws.resume")
#: A store outage fails every session at once: its lines at once, then at most one a minute each.
_store_trouble = RepeatedLog(logger, 60.0)

#: Frames stored by one store call at most (Redis scripts take a bounded argument list).
MAX_BATCH = 4000


class _Batch:
    """Frames taken from a session for one store call."""

    __slots__ = ("append", "cursors", "messages")

    def __init__(self, messages: list[Message], cursors: dict[str, str] | None, append: Append) -> None:
        self.messages = messages
        self.cursors = cursors
        self.append = append


class SessionLimits:
    """Bounds of one session's retained history and of its pending batch."""

    __slots__ = ("max_bytes", "max_messages", "max_pending", "window")

    def __init__(self, window: float, max_messages: int, max_bytes: int, max_pending: int) -> None:
        self.window = window
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_pending = max_pending


class Session:
    """The resumable session of one connection (``scope["asgi_ws"]["session"]``).

    Attributes:
        id: the session id.
        resumed: True when this connection resumed an earlier session.
        seq: seq of the last data frame numbered (stored or about to be).
        rooms: room -> member format, restored by a resume.
    """

    __slots__ = (
        "__weakref__",
        "_drained",
        "_filled",
        "_frames",
        "_handing",
        "_held",
        "_live_hold",
        "_marked",
        "_moves",
        "_out",
        "_pending",
        "_retained",
        "_retained_bytes",
        "_storing",
        "_waiters",
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
        "stored",
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
        seq: int = 0,
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
        self.seq = self.stored = self.offered = seq
        self.rooms: dict[str, str] = {}
        self.detached = False
        self._pending: list[Message] = []
        self._frames: list[bytes] = []  # the stored form of each pending message, encoded by offer
        self._retained: collections.deque[int] = collections.deque()  # sizes of stored, unacked frames
        self._retained_bytes = 0
        self._marked = False  # waiting in the flusher's next round
        self._storing = False  # a batch is being stored
        self._waiters: list[asyncio.Future[None]] | None = None
        self._drained: asyncio.Future[None] | None = None  # finish() waits for the last store
        # Stored frames waiting for room in the outbound queue, and the task handing them over.
        self._out: collections.deque[Message] = collections.deque()
        self._handing: asyncio.Task[None] | None = None
        #: While a resume replays, new frames are stored but held back here, behind the replay.
        self._held: list[Message] | None = None
        #: room -> position of the newest room message numbered for this session (brokers
        #: with history): where a resume fills the room's gap from.
        self.cursors: dict[str, str] = {}
        # (seq, room, position) of numbered room messages not yet stored: stored with their batch.
        self._moves: collections.deque[tuple[int, str, str]] = collections.deque()
        #: While a resume fills the rooms' gaps, live room messages wait here, unnumbered.
        self._live_hold: list[tuple[Message, str, str | None]] | None = None
        self._filled: dict[str, str] = {}  # room -> position the fill reached

    # -- sending -----------------------------------------------------------------------------

    def offer(self, message: Message) -> bool:
        """Number ``message`` and queue it for storing then sending.

        Fan-out cannot wait: a member whose pending frames reach ``4 * max_pending`` (its
        client or the store cannot keep up) is closed with 1013, and resumes.

        Raises:
            UnicodeEncodeError: text that is not valid Unicode (a lone surrogate): nothing is
                numbered, and the shared flusher never sees it.
        """
        if self.detached:
            return False
        frame = frame_of(message)
        if len(self._pending) >= 4 * self.limits.max_pending and not self.conn.ended:
            self._give_up(CloseCode.TRY_AGAIN_LATER, "slow consumer")
            return False
        self.seq += 1
        self._pending.append(message)
        self._frames.append(frame)
        if not self._marked:
            self._marked = True
            self.flusher.mark(self)
        return True

    def offer_from(self, message: Message, room: str, position: str | None) -> bool:
        """A room message (Rooms' fan-out entry point): numbered like any frame, and the room's
        position kept. Never raises: an unencodable message is not delivered (False)."""
        if self._live_hold is not None:
            self._live_hold.append((message, room, position))
            return True
        try:
            if not self.offer(message):
                return False
        except UnicodeEncodeError as exc:
            logger.warning("session %s: not delivering a message of room %r: %s", self.id, room, exc)
            return False
        if position is not None:
            self._moves.append((self.seq, room, position))
        return True

    def send(self, message: Message) -> Any:
        """The application's ``send`` for data frames: returns an awaitable, as ASGI requires.

        Raises:
            UnicodeEncodeError: at the application's call, for text no socket could send.
        """
        self.offer(message)
        if len(self._pending) < self.limits.max_pending:
            return self.conn._done
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        return waiter

    def take(self) -> _Batch | None:
        """The flusher's round: the next batch of pending frames, and how to store it."""
        self._marked = False
        if not self._pending or self.detached:
            return None
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        frames, self._frames = self._frames[:MAX_BATCH], self._frames[MAX_BATCH:]
        keep_from = self._keep_from(frames)
        cursors = self._cursors_of_batch(self.stored + len(batch))
        append = (self.id, self.owner, self.stored + 1, frames, keep_from, self.limits.window, cursors)
        self._storing = True
        return _Batch(batch, cursors, append)

    def stored_batch(self, batch: _Batch, result: bool | BaseException | None) -> list[Message] | None:
        """The flusher stored ``batch`` (``True``), was refused (``False``: the session was taken
        over elsewhere; ``None``: the store lost it) or failed; returns the frames to
        :meth:`hand_over` now, if any."""
        self._storing = False
        if isinstance(result, BaseException):
            logger.error("session %s: could not store outgoing messages (%s): closing", self.id, result)
            self._give_up(CloseCode.TRY_AGAIN_LATER, "session store unavailable")
            return None
        if result is not True:
            self._refused(result)
            return None
        self.stored += len(batch.messages)
        if batch.cursors:
            self.cursors.update(batch.cursors)
        if self._pending:  # more than one batch, or numbered while this one was stored
            if not self._marked:
                self._marked = True
                self.flusher.mark(self)
        else:
            self._wake(self._drained_waiters())
        if self._waiters is not None and len(self._pending) < self.limits.max_pending:
            waiters, self._waiters = self._waiters, None
            self._wake(waiters)
        if self._held is not None:
            self._held.extend(batch.messages)
            return None
        return batch.messages

    def _drained_waiters(self) -> list[asyncio.Future[None]]:
        drained, self._drained = self._drained, None
        return [drained] if drained is not None else []

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _cursors_of_batch(self, last_seq: int) -> dict[str, str] | None:
        """The rooms' positions reached by the frames up to ``last_seq``, stored with them."""
        moves = self._moves
        if not moves or moves[0][0] > last_seq:
            return None
        cursors: dict[str, str] = {}
        while moves and moves[0][0] <= last_seq:
            _, room, position = moves.popleft()
            cursors[room] = position
        return cursors

    def hand_over(self, messages: list[Message]) -> None:
        """Give stored frames to the outbound path in order; once its queue is full (its policy
        is ``block``, falling back to closing with 1013: never a dropped frame), the rest wait
        in ``_out`` for one task that awaits room."""
        if self._handing is not None:
            self._out.extend(messages)
            return
        outbound, conn = self.conn.outbound, self.conn
        for index, message in enumerate(messages):
            if conn.ended or conn.closing:
                self.offered += len(messages) - index  # stored: the client gets them by resuming
                return
            try:
                if outbound.write_now(message) == SLOW:
                    self._out.extend(messages[index:])
                    self._handing = asyncio.get_running_loop().create_task(self._hand_over_slowly())
                    return
            except (OSError, RuntimeError):
                pass  # the socket broke; the connection ends, the frames stay stored
            self.offered += 1

    async def _hand_over_slowly(self) -> None:
        outbound, out = self.conn.outbound, self._out
        try:
            while out:
                message = out.popleft()
                if not (self.conn.ended or self.conn.closing):
                    with contextlib.suppress(OSError, RuntimeError):  # the connection is ending
                        await outbound.send(message)
                self.offered += 1
        finally:
            self._handing = None

    def _keep_from(self, frames: list[bytes]) -> int:
        """Record the batch's sizes; return the oldest seq to keep under the history bounds."""
        retained = self._retained
        for frame in frames:
            retained.append(len(frame))
            self._retained_bytes += len(frame)
        keep_from = self.stored + len(frames) + 1 - len(retained)
        limits = self.limits
        while retained and (len(retained) > limits.max_messages or self._retained_bytes > limits.max_bytes):
            self._retained_bytes -= retained.popleft()
            keep_from += 1
        return keep_from

    def _refused(self, result: bool | None) -> None:
        """The store refused a write: another socket took the session over (4409), or the
        store no longer has it (4404: flushed, evicted, expired; the client starts afresh)."""
        if result is None:
            _store_trouble.warning("session %s: the store lost it: closing with 4404", self.id, key="lost")
            self._give_up(CloseCode.SESSION_LOST, "session lost by the store")
        else:
            self._give_up(CloseCode.SESSION_REPLACED, "session resumed on another connection")

    def _give_up(self, code: int, reason: str) -> None:
        self.detached = True
        self._pending.clear()
        self._frames.clear()
        self._wake([*self._drained_waiters(), *(self._waiters or ())])
        self._waiters = None
        self.conn.close(code, reason)

    # -- acknowledgements and renewal ----------------------------------------------------------

    def ack(self, seq: int) -> None:
        """The client has every frame up to ``seq``: they need not be kept."""
        retained = self._retained
        first = self.stored + 1 - len(retained)
        while retained and first <= seq:
            self._retained_bytes -= retained.popleft()
            first += 1

    def keep_from(self) -> int:
        return self.stored + 1 - len(self._retained)

    def _touch(self) -> Awaitable[bool | None]:
        """Extend the session's life, trim acked frames, save its rooms and stored positions."""
        return self.store.touch(
            self.id, self.owner, self.keep_from(), self.limits.window, dict(self.rooms), dict(self.cursors)
        )

    def token(self) -> str:
        return self.signer.sign(self.id, self.identity, self.generation)

    def announce(self, op: str = "session", **extra: Any) -> None:
        """Tell the client its session (``session``/``resumed``) with a fresh token."""
        fields = {"id": self.id, "token": self.token(), "seq": self.offered, "window": self.limits.window, **extra}
        self.conn.control.send(op, fields)

    async def renew(self) -> bool:
        """Extend the session's life in the store, trim acked frames, send a fresh token.

        Returns False when the session was taken over by another connection or lost by the
        store (then closed with 4409 or 4404).
        """
        try:
            result = await self._touch()
        except Exception as exc:
            _store_trouble.warning("session %s: could not renew it in the store: %s", self.id, exc, key="renew")
            return True
        if result is not True:
            if not self.detached:
                self._refused(result)
            return False
        if not self.conn.ended and not self.conn.closing:
            self.announce()
        return True

    async def finish(self, *, ended_by_client: bool) -> None:
        """The socket is gone: store what is pending, then keep the session for the window,
        or forget it when the client closed it for good (close code 1000)."""
        if (self._pending or self._storing) and not self.detached:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        self.detached = True
        try:
            if ended_by_client:
                await self.store.delete(self.id, self.owner)
            else:
                await self._touch()
        except Exception as exc:
            _store_trouble.warning(
                "session %s: could not update the store at disconnect: %s", self.id, exc, key="disconnect"
            )

    def hold(self) -> None:
        """Hold new frames back (stored, not sent) until :meth:`replay` has sent the missed ones."""
        self._held = []

    async def replay(self, frames: list[bytes]) -> None:
        """Send stored frames again, in order, after ``resumed`` (they keep their seqs), then
        the frames held back meanwhile.

        Replay waits for room in the outbound queue rather than overflowing it.
        """
        send = self.conn.outbound.send
        for frame in frames:
            size = len(frame)
            self._retained.append(size)
            self._retained_bytes += size
            self.offered += 1
            message = message_of(frame)
            message["asgi_ws"] = {"overflow": "block"}
            await send(message)
        held, self._held = self._held or [], None
        self.hand_over(held)

    # -- rooms -----------------------------------------------------------------------------------

    def joined(self, room: str, fmt: str, position: str | None) -> None:
        """Rooms calls this once the room's subscription is up: the membership comes back with a
        resume, and (history brokers) the room's messages after ``position`` are the session's."""
        changed = self.rooms.get(room) != fmt
        self.rooms[room] = fmt
        if position is not None and room not in self.cursors:  # a resume keeps the older cursor
            self.cursors[room] = position
            changed = True
        if changed:
            self._save_rooms()

    def hold_live(self) -> None:
        """Keep live room messages aside, unnumbered, while a resume fills the rooms' gaps."""
        self._live_hold = []

    def fill(self, room: str, missed: list[tuple[str, Message]]) -> int:
        """Number the room messages the session missed (from the broker's history), in order."""
        held, self._live_hold = self._live_hold, None
        try:
            for position, message in missed:
                self.offer_from(message, room, position)
        finally:
            self._live_hold = held
        if missed:
            self._filled[room] = missed[-1][0]
        return len(missed)

    def drop_live(self) -> None:
        """The resume failed: forget the live room messages kept aside."""
        self._live_hold = None
        self._filled = {}

    def release_live(self) -> None:
        """Number the live room messages kept aside, except those the fill already covered."""
        held, self._live_hold = self._live_hold or [], None
        reached, self._filled = self._filled, {}
        for message, room, position in held:
            cursor = reached.get(room) or self.cursors.get(room)
            if position is not None and cursor is not None and position_key(position) <= position_key(cursor):
                continue  # it came in the fill
            self.offer_from(message, room, position)

    def left(self, room: str) -> None:
        """Rooms calls this; leaving because the socket ended keeps the membership for a resume."""
        if not self.conn.ended and self.rooms.pop(room, None) is not None:
            self._save_rooms()

    def _save_rooms(self) -> None:
        spawn(self._touch_rooms())

    async def _touch_rooms(self) -> None:
        try:
            await self._touch()
        except Exception as exc:
            _store_trouble.warning("session %s: could not record its rooms: %s", self.id, exc, key="rooms")


_TASKS: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` in the background, keeping a reference until it is done (store writes a
    connection's end or a timer starts, which nobody awaits)."""
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def session_of(conn: Connection) -> Session | None:
    """The resumable session of ``conn``, if it has one."""
    extras = conn._extras
    session = extras.get("session") if extras is not None else None
    return session if isinstance(session, Session) else None


__all__ = ["MAX_BATCH", "Session", "SessionLimits", "session_of", "spawn"]
