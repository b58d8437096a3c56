"""The outbound path of one connection: eager writes, the queue while backlogged, control frames, closes.

:class:`Outbound` keeps exactly one write in flight per socket (uvicorn's legacy
``websockets`` implementation fails outright on two concurrent blocked writes). While the
client keeps up, a message is written eagerly (:mod:`asgi_ws.outbound.eager`); once a write
suspends, new messages wait in the bounded :class:`~asgi_ws.outbound.queue.OutboundQueue`,
whose policy decides what happens to those that do not fit, until the writer task has
drained it. The library's control frames pass queued application messages (never the write
in flight); the application's own accept and close are awaited in the application's task, as
the server would, and keep their place among its messages.

For a client that asked for batches (:mod:`asgi_ws.outbound.batching`), the text messages
that follow the first one of a loop turn wait for the end of the turn and go as one batch
frame, and the writer task writes what queued behind a blocked write in batch frames.

Without limits (no BackpressureMiddleware) application messages are written inline, as the
server would, and only the library's own messages (pings, closes) are serialised with them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Hashable
from typing import Final

from ..exceptions import ConfigurationError
from ..protocol import encode_batch
from ..types import Message, Send
from .batching import Batch, BatchLimits, text_size, turns_of
from .eager import EagerWriter, Frame
from .limits import POLICIES, QueueLimits, message_size
from .queue import CLOSE, CONFLATED, DROPPED, OutboundQueue
from .totals import OutboundTotals

logger = logging.getLogger("asgi_ws.outbound")

#: Library control messages waiting behind a blocked write, at most; older ones are dropped.
MAX_PENDING_CONTROL = 64

# Results of Outbound.write_now.
SLOW: Final = 0  # not handled: await Outbound.send
HANDLED: Final = 1  # written, queued, or settled by the overflow policy
WAIT: Final = 2  # without limits, the write blocked: await Outbound.wait_written


class Outbound(EagerWriter):
    """The outbound path of one connection; see the module docstring.

    Args:
        send: the ``send`` toward the server.
        on_overflow_close: called with ``(code, reason)`` when the ``close`` policy fires.
    """

    # Slots: one of these exists per open socket.
    __slots__ = (
        "_batch",
        "_closed",
        "_closer",
        "_control",
        "_inflight",
        "_inflight_done",
        "_on_overflow_close",
        "_queue",
        "_room",
        "_slow",
        "_unqueued_drops",
        "limits",
        "totals",
    )

    def __init__(self, send: Send, on_overflow_close: Callable[[int, str], None]) -> None:
        super().__init__(send)
        self._on_overflow_close = on_overflow_close
        self.limits: QueueLimits | None = None
        self.totals: OutboundTotals | None = None
        self._queue: OutboundQueue | None = None
        self._control: collections.deque[Message] | None = None
        self._inflight = False
        #: True while the eager path may not be taken as it is: failed, closed, a write in
        #: flight without limits, or batching. One flag, because write_now and offer read it
        #: for every message.
        self._slow = False
        self._batch: Batch | None = None
        self._room: asyncio.Event | None = None
        self._closed = False
        self._inflight_done: asyncio.Event | None = None
        self._closer: asyncio.Task[None] | None = None
        self._unqueued_drops = 0  # offers dropped without a queue (no limits, a write in flight)

    # -- configuration and state ----------------------------------------------------------

    def configure(self, limits: QueueLimits, totals: OutboundTotals | None = None) -> None:
        """Bound this connection's queue; only the first configuration counts."""
        if self.limits is None:
            self.limits = limits
            self.totals = totals
            if totals is not None:
                totals.join(self)

    def start_batching(self, limits: BatchLimits) -> None:
        """Write this connection's text messages in batch frames when they come faster than one
        a loop turn, or queue behind a blocked write (the client asked for it in ``hello``).
        Only a bounded connection batches: without limits this does nothing."""
        if self._batch is None and self.limits is not None:
            self._batch = Batch(limits, turns_of(asyncio.get_running_loop()))
            self._slow = True  # write_now and offer take the batching path from now on

    @property
    def batches(self) -> int:
        """Batch frames written on this connection."""
        return self._batch.frames if self._batch is not None else 0

    def release(self) -> None:
        """The connection ended: fold its counts into the totals and forget it."""
        if self.totals is not None:
            self.totals.leave(self)

    @property
    def queued(self) -> int:
        """Application messages waiting in the queue."""
        queue = self._queue
        return queue.queued if queue is not None else 0

    @property
    def queued_bytes(self) -> int:
        """Their payload, in bytes."""
        queue = self._queue
        return queue.queued_bytes if queue is not None else 0

    @property
    def dropped(self) -> int:
        """Application messages dropped by an overflow policy, or by a close or failure while queued."""
        queue = self._queue
        return self._unqueued_drops + (queue.dropped if queue is not None else 0)

    @property
    def conflated(self) -> int:
        """Application messages replaced by a newer one with the same key."""
        queue = self._queue
        return queue.conflated if queue is not None else 0

    @property
    def backlogged(self) -> bool:
        """True while a write is blocked and messages wait behind it, or a batch waits for the
        end of the loop turn."""
        return self._writer is not None or (self._batch is not None and bool(self._batch.pending))

    def stats(self) -> dict[str, int]:
        """Counters of this connection: queued, queued_bytes, sent, dropped, conflated."""
        return {
            "queued": self.queued,
            "queued_bytes": self.queued_bytes,
            "sent": self.sent,
            "dropped": self.dropped,
            "conflated": self.conflated,
        }

    # -- the application's path -------------------------------------------------------------

    def write_now(self, message: Message) -> int:
        """Handle an application data frame without awaiting, when that is possible.

        Returns :data:`HANDLED` when ``message`` was written, queued, or dropped/conflated/
        closed by the policy; :data:`WAIT` when, without limits, the write blocked and the
        caller must wait for it (:meth:`wait_written`), as it would on the server's own
        send; :data:`SLOW` when the caller must ``await send(message)`` instead (the
        ``block`` policy on a full queue, per-message options, a failed or closed path, a
        write in flight without limits). The connection calls this first so that the common
        case costs no extra coroutine: this is the hottest code of the library.
        """
        if self._slow or "asgi_ws" in message:
            return self._write_batched(message) if self._batch is not None else SLOW
        if self._writer is None:
            # EagerWriter._start() written out: this is the one copy on the per-message path
            # (a call costs ~500 instructions, see docs/internals.md).
            coro = self._send(message)
            try:
                yielded = coro.send(None)  # type: ignore[attr-defined]
            except StopIteration:
                self.sent += 1
                return HANDLED
            except (OSError, RuntimeError) as exc:
                self._fail(exc)
                raise
            self._hand_to_writer(coro, yielded, 1)
            return WAIT if self.limits is None else HANDLED
        limits = self.limits
        if limits is None:
            return SLOW
        size = message_size(message)
        if limits.policy == "block" and not self._queue_of(limits).fits(size):
            return SLOW
        self._enqueue(message, size, limits.policy, None)
        return HANDLED

    def _write_batched(self, message: Message) -> int:
        """:meth:`write_now` on a connection that batches."""
        if self.failed is not None or self._closed or self._inflight or "asgi_ws" in message:
            return SLOW
        if self._writer is None:
            batch = self._batch
            assert batch is not None
            turns = batch.turns
            if batch.turn != turns.now and not batch.pending:  # the first of this turn: at once, alone
                batch.turn = turns.now
                if not turns.armed:
                    turns.arm()
                self._start(message, raise_errors=True)
                return HANDLED
            if self._coalesce(message):
                return HANDLED
            if self._writer is None:
                self._start(message, raise_errors=True)
                return HANDLED
        limits = self.limits
        assert limits is not None  # only bounded connections batch
        size = message_size(message)
        if limits.policy == "block" and not self._queue_of(limits).fits(size):
            return SLOW
        self._enqueue(message, size, limits.policy, None)
        return HANDLED

    async def wait_written(self) -> None:
        """Wait until the blocked write finished (without limits); raise if it failed or was abandoned."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer})
        if self.failed is not None:
            raise self.failed
        if self._closed:  # a close abandoned the write
            raise RuntimeError("the connection is closing")

    async def send(self, message: Message) -> None:
        """Send ``message`` for the application; returns at once while the queue has room."""
        limits = self.limits
        if limits is None:
            await self._send_inline(message)
            return
        if self.failed is not None:
            raise self.failed
        options = message.get("asgi_ws")
        policy: str = limits.policy
        key: Hashable | None = None
        if options is not None:
            message = {k: v for k, v in message.items() if k != "asgi_ws"}
            policy = options.get("overflow", policy)
            key = options.get("key")
            if policy not in POLICIES:
                raise ConfigurationError(f"per-message overflow must be one of {sorted(POLICIES)}")
        if message["type"] != "websocket.send":
            await self._send_protocol(message)
            return
        self._flush_batch()  # what waits for the end of the turn goes first
        if self._writer is None:
            self._start(message, raise_errors=True)
            return
        size = message_size(message)
        if policy == "block" and not self._queue_of(limits).fits(size):
            policy = await self._wait_for_room(size, limits)
            if self.failed is not None:
                raise self.failed
            if self._closed:  # a close (ours or the application's) went out while this send waited
                raise RuntimeError("the connection is closing")
            if self._writer is None:  # the backlog drained while we waited
                self._flush_batch()
                if self._writer is None:
                    self._start(message, raise_errors=True)
                    return
        self._enqueue(message, size, policy, key)

    def offer(
        self, message: Message, mark: object = None, /, *, policy: str | None = None, key: Hashable | None = None
    ) -> bool:
        """Send ``message`` without awaiting (for fan-out loops); return False when it was not accepted.

        ``block`` cannot wait here and applies the fallback policy. Errors of a broken
        connection are recorded in :attr:`failed`, never raised: one dead member must not
        break a broadcast. ``mark`` (where a room message stands in its history) is not needed
        here: this is also the connection's default delivery sink (:mod:`asgi_ws.delivery`).
        """
        if self._slow:
            if self.failed is not None or self._closed:
                return False
            batch = self._batch
            if batch is not None and self._writer is None and not self._inflight:
                # The same decision as _write_batched's, written out: a shared method costs
                # ~650 instructions a message here (bench/outbound_instructions.py, offer_batch).
                turns = batch.turns
                if batch.turn != turns.now and not batch.pending:  # the first of this turn: at once, alone
                    batch.turn = turns.now
                    if not turns.armed:
                        turns.arm()
                    return self._start(message, raise_errors=False)
                if self._coalesce(message):
                    return True
                if self._writer is None:
                    return self._start(message, raise_errors=False)
        elif self._writer is None:
            return self._start(message, raise_errors=False)
        limits = self.limits
        if limits is None:
            # A connection without limits has no queue: while a write is in flight a message
            # offered to it is dropped, and counted.
            self._unqueued_drops += 1
            return False
        chosen = policy or limits.policy
        if chosen == "block":
            chosen = limits.fallback
        return self._enqueue(message, message_size(message), chosen, key)

    #: The default delivery sink of a connection (:class:`asgi_ws.delivery.Sink`) is its outbound path.
    deliver = offer

    # -- the library's path -------------------------------------------------------------------

    def send_control(self, text: str) -> None:
        """Send a control frame; it passes queued application messages, never a write in flight."""
        if self.failed is not None or self._closed:
            return
        message: Message = {"type": "websocket.send", "text": text}
        if self._writer is None and not self._inflight:
            self._start(message, raise_errors=False, count=0)
            return
        if self._control is None:
            self._control = collections.deque(maxlen=MAX_PENDING_CONTROL)
        self._control.append(message)

    def close(self, code: int, reason: str) -> asyncio.Task[None]:
        """Drop what is queued and write a close frame once the write in flight (if any) is done.

        A write blocked on a client that stopped reading is abandoned. Returns the task that
        writes the close frame; it ends when the frame is written or cannot be.
        """
        self._closed = self._slow = True
        self._drop_queue()
        writer = self._writer
        if writer is not None:
            writer.cancel()
        close: Message = {"type": "websocket.close", "code": code, "reason": reason}
        self._closer = asyncio.get_running_loop().create_task(self._send_close(writer, close))
        return self._closer

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the close frame of :meth:`close` to be written."""
        if self._closer is not None:
            await asyncio.wait({self._closer}, timeout=timeout)

    async def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the backlog to be written (at the end of the app)."""
        self._flush_batch()
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer}, timeout=timeout)

    # -- internals -------------------------------------------------------------------------------

    async def _send_inline(self, message: Message) -> None:
        """Await the server's send in the caller's task, one write at a time."""
        writer = self._writer
        while writer is not None:  # a library message is being written: wait for it
            await asyncio.wait({writer})
            writer = self._writer if self._writer is not writer else None
        if message["type"] == "websocket.send":
            if self.failed is not None:
                raise self.failed
            if self._closed:  # a close went out while this send waited
                raise RuntimeError("the connection is closing")
        self._inflight = self._slow = True
        try:
            await self._send(message)
        finally:
            self._inflight = False
            self._slow = self._closed or self.failed is not None or self._batch is not None
            if self._inflight_done is not None:
                self._inflight_done.set()
            if not self._closed:
                self._kick()
        if message["type"] == "websocket.send":
            self.sent += 1

    async def _send_protocol(self, message: Message) -> None:
        """The application's accept/close: in order with its messages, never dropped."""
        self._flush_batch()  # the application's messages before it go first
        if message["type"] == "websocket.close":
            self._closed = self._slow = True  # nothing may follow the application's close
        if self._writer is None:
            await self._send_inline(message)
            return
        assert self.limits is not None  # a writer without limits writes library messages only
        self._queue_of(self.limits).push_protocol(message)
        if message["type"] == "websocket.close":
            await self.flush(self.limits.block_timeout)

    def _kick(self) -> None:
        """Write the control messages that waited for an inline write, until one suspends."""
        control = self._control
        while control and self._writer is None and self.failed is None:
            self._start(control.popleft(), raise_errors=False, count=0)

    def _next_frame(self) -> Frame | None:
        """The writer task's next frame: control messages first, then the queue in order."""
        if self._control:
            return self._control.popleft(), 0
        queue = self._queue
        if queue:
            batch = self._batch
            if batch is not None:
                entries = queue.pop_texts(batch.max_messages, batch.max_bytes)
                if len(entries) > 1:
                    if self._room is not None:
                        self._room.set()
                    batch.frames += 1
                    text = encode_batch([entry.message["text"] for entry in entries])
                    return {"type": "websocket.send", "text": text}, len(entries)
                entry = entries[0] if entries else queue.pop()
            else:
                entry = queue.pop()
            if self._room is not None:
                self._room.set()
            return entry.message, 1 if entry.app else 0
        return None

    def _backlog_changed(self, started: bool) -> None:
        batch = self._batch
        if started and batch is not None and batch.pending:
            # A control frame's write suspended while messages waited for the end of the turn:
            # they queue first (the queue is empty: it fills only while a writer runs).
            texts = batch.pending
            batch.pending = []
            batch.pending_bytes = 0
            self._readmit(texts)
        if self.totals is not None:
            self.totals.backlogged += 1 if started else -1
        if not started and self._room is not None:
            self._room.set()

    def _coalesce(self, message: Message) -> bool:
        """Batching, nothing in flight, a message written alone this loop turn already (the
        callers check that first): keep ``message`` for the batch of this turn, or return False
        for it to be written now (binary, too large), after what waited (if anything waited and
        its write suspended, it is to be queued)."""
        batch = self._batch
        assert batch is not None
        turns = batch.turns
        pending = batch.pending
        text = message.get("text")
        size = text_size(text) if text is not None and message.get("bytes") is None else -1
        if size < 0 or size > batch.max_bytes:  # never batched: alone, after what waits
            if pending:
                self._flush_batch()
            return False
        if pending and batch.pending_bytes + size > batch.max_bytes:
            self._flush_batch()
            if self._writer is not None:
                return False
            pending = batch.pending
        if not pending:
            turns.due.append(self)
            if not turns.armed:
                turns.arm()
        pending.append(text)  # type: ignore[arg-type]
        batch.pending_bytes += size
        if len(pending) >= batch.max_messages:
            self._flush_batch()
        return True

    def _flush_batch(self) -> None:
        """Write what waits for the end of the turn: one message alone, several in a batch frame."""
        batch = self._batch
        if batch is None or not batch.pending:
            return
        texts = batch.pending
        batch.pending = []
        batch.pending_bytes = 0
        if self.failed is not None or self._closed:
            return  # dropped with the rest when the path failed or closed (counted there)
        if self._writer is not None:  # (not expected: a starting writer takes them) they queue first
            self._readmit(texts)
            return
        count = len(texts)
        if count == 1:
            frame: Message = {"type": "websocket.send", "text": texts[0]}
        else:
            frame = {"type": "websocket.send", "text": encode_batch(texts)}
        if not self._start(frame, raise_errors=False, count=count):
            self._unqueued_drops += count  # accepted earlier, never written: counted as dropped
        elif count > 1:
            batch.frames += 1

    def _readmit(self, texts: list[str]) -> None:
        """Queue text messages already accepted (they waited for the end of the turn), whatever the limits."""
        assert self.limits is not None  # only bounded connections batch
        queue = self._queue_of(self.limits)
        for text in texts:
            queue.readmit({"type": "websocket.send", "text": text}, text_size(text))

    def _queue_of(self, limits: QueueLimits) -> OutboundQueue:
        queue = self._queue
        if queue is None:
            queue = self._queue = OutboundQueue(limits)
        elif queue.limits is not limits:  # ResumeMiddleware made the policy "block" after a backlog began
            queue.limits = limits
        return queue

    def _enqueue(self, message: Message, size: int, policy: str, key: Hashable | None) -> bool:
        """Queue ``message`` behind the blocked write, applying ``policy`` if it does not fit."""
        limits = self.limits
        assert limits is not None
        queue = self._queue
        if queue is None or queue.limits is not limits:
            queue = self._queue_of(limits)
        verdict = queue.offer(message, size, policy, key)
        if verdict <= CONFLATED:
            return True
        if verdict == CLOSE:  # the slow consumer goes, and the close path drops its queue
            if self.totals is not None:
                self.totals.closed_for_slowness += 1
            self._on_overflow_close(int(limits.close_code), limits.close_reason)
        assert verdict in (DROPPED, CLOSE)
        return False

    def _drop_queue(self) -> None:
        batch = self._batch
        if batch is not None and batch.pending:
            self._unqueued_drops += len(batch.pending)
            batch.pending = []
            batch.pending_bytes = 0
        if self._queue is not None:
            self._queue.clear()
        if self._control:
            self._control.clear()

    async def _wait_for_room(self, size: int, limits: QueueLimits) -> str:
        """Wait until ``size`` fits (return "block": enqueue it) or the timeout (return the fallback)."""
        if self._room is None:
            self._room = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.block_timeout
        queue = self._queue_of(limits)
        while self._writer is not None and not queue.fits(size):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return limits.fallback
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except asyncio.TimeoutError:
                return limits.fallback
        return "block"

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            self._slow = True
            logger.debug("outbound writes failed: %r", exc)
        self._drop_queue()

    async def _send_close(self, writer: asyncio.Task[None] | None, message: Message) -> None:
        if writer is not None:
            await asyncio.wait({writer})  # let the abandoned write unwind first
            self._abandon_suspended()  # the writer was cancelled before it ever ran
        while self._inflight:  # the application's own write (no queue) goes first
            if self._inflight_done is None:
                self._inflight_done = asyncio.Event()
            self._inflight_done.clear()
            await self._inflight_done.wait()
        try:
            await self._send(message)
        except Exception as exc:  # the peer is gone, or the server refuses: the socket is closing anyway
            logger.debug("close frame not written: %r", exc)


__all__ = ["HANDLED", "MAX_PENDING_CONTROL", "SLOW", "WAIT", "Outbound"]
