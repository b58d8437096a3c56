"""The single outbound path of a connection: eager sends, and a bounded queue only while backlogged.

Every message the library or the application sends on an asgi_ws connection after the
handshake goes through one :class:`Outbound`, which keeps exactly one write in flight per
socket (uvicorn's legacy ``websockets`` implementation fails outright on two concurrent
blocked writes).

While the client keeps up, a message is written **eagerly**: the server's ``send`` coroutine
is driven by hand and, as long as the socket is writable, it completes without suspending,
so the message costs no task, no queue entry and no extra loop iteration. The first time a
write suspends (the client stopped reading and the transport paused), the started coroutine
is handed to a writer task, and until that task has drained the backlog new messages wait in
a bounded queue where the overflow policy applies. This is the design PERF_NOTES asks for:
straight through while the connection keeps up, queued (with a policy) only when it does not.

Only data frames (``websocket.send``) are written eagerly: a server's data write must not
depend on the task it runs in, which holds for uvicorn's three implementations, hypercorn and
daphne. Closes run in a task of their own (uvicorn's legacy implementation wraps its close in
``asyncio.timeout()``, which belongs to the current task), and the application's own accept
and close are awaited in the application's task, as the server would.

Without limits (no BackpressureMiddleware) application messages are written inline, as the
server would, and only the library's own messages (pings, closes) are serialised with them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Literal

from .close_codes import CloseCode, check_close_code
from .exceptions import ConfigurationError
from .types import Message, Send

logger = logging.getLogger("asgi_ws.outbound")

Policy = Literal["block", "drop_oldest", "drop_newest", "conflate", "close"]
POLICIES: frozenset[str] = frozenset({"block", "drop_oldest", "drop_newest", "conflate", "close"})
KeyFunc = Callable[[Message], "Hashable | None"]

#: Library control messages waiting behind a blocked write, at most; older ones are dropped.
MAX_PENDING_CONTROL = 64

# Results of Outbound.write_now.
SLOW = 0  # not handled: await Outbound.send
HANDLED = 1  # written, queued, or settled by the overflow policy
WAIT = 2  # without limits, the write blocked: await Outbound.wait_written


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Bounds and overflow policy of a connection's outbound queue.

    Attributes:
        max_messages: queued application messages at most; None: no count limit.
        max_bytes: queued payload at most, in bytes (UTF-8 bytes for text); None: no byte
            limit. One message larger than the limit is still accepted into an empty queue.
        policy: what to do with a message that does not fit (see ``docs/middleware/backpressure.md``).
        block_timeout: seconds ``block`` waits for room before applying ``fallback``.
        fallback: policy applied after a ``block`` timeout, and by ``conflate`` for a message
            whose key is None or not queued while the queue is full. Not ``block``/``conflate``.
        conflate_key: ``key(message) -> hashable | None`` for the ``conflate`` policy.
        close_code: close code of the ``close`` policy.
        close_reason: close reason of the ``close`` policy.
    """

    max_messages: int | None = 1000
    max_bytes: int | None = 1_048_576
    policy: Policy = "drop_oldest"
    block_timeout: float = 5.0
    fallback: Policy = "close"
    conflate_key: KeyFunc | None = None
    close_code: int = CloseCode.TRY_AGAIN_LATER
    close_reason: str = "slow consumer"

    def __post_init__(self) -> None:
        if self.max_messages is None and self.max_bytes is None:
            raise ConfigurationError(
                "an outbound queue needs max_messages and/or max_bytes: unbounded queues are refused"
            )
        for name in ("max_messages", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"{name} must be a positive integer or None")
        if self.policy not in POLICIES:
            raise ConfigurationError(f"policy must be one of {sorted(POLICIES)}, not {self.policy!r}")
        if self.fallback not in POLICIES - {"block", "conflate"}:
            raise ConfigurationError("fallback must be 'drop_oldest', 'drop_newest' or 'close'")
        if self.policy == "conflate" and self.conflate_key is None:
            raise ConfigurationError("policy='conflate' needs conflate_key=callable(message) -> key")
        if self.block_timeout <= 0:
            raise ConfigurationError("block_timeout must be positive")
        check_close_code(self.close_code)


class OutboundTotals:
    """Counters summed over every connection that shares them (one per BackpressureMiddleware).

    ``sent`` is summed when read (from the live connections and those that ended), so the
    per-message path only counts on its own connection; the rare events are counted here
    as they happen.
    """

    def __init__(self) -> None:
        self.dropped = 0
        self.conflated = 0
        self.closed_for_slowness = 0
        self.queued = 0  # application messages waiting right now, over all connections
        self.backlogged = 0  # connections with a writer task right now
        self._sent_by_ended = 0
        self._live: set[Outbound] = set()

    @property
    def sent(self) -> int:
        """Application messages written, over every connection."""
        return self._sent_by_ended + sum(outbound.sent for outbound in self._live)

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "conflated": self.conflated,
            "closed_for_slowness": self.closed_for_slowness,
            "queued": self.queued,
            "backlogged": self.backlogged,
        }


@dataclass(slots=True)
class _Entry:
    message: Message
    size: int
    key: Hashable | None = None
    app: bool = True  # False for control frames and the app's own accept/close: never dropped, never counted


def message_size(message: Message) -> int:
    """Payload size used for ``max_bytes``: bytes of binary, UTF-8 bytes of text (what goes on the wire).

    Only queued messages are measured. ASCII text (``isascii()`` reads a flag CPython keeps)
    is its length; other text is encoded to count it, about 0.75 ns a character here.
    """
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    if text is None:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Outbound:
    """The outbound path of one connection; see the module docstring.

    Args:
        send: the ``send`` toward the server.
        on_overflow_close: called with ``(code, reason)`` when the ``close`` policy fires.
    """

    # Slots: one of these exists per open socket.
    __slots__ = (
        "_closed",
        "_closer",
        "_control",
        "_inflight",
        "_inflight_done",
        "_keys",
        "_on_overflow_close",
        "_queue",
        "_room",
        "_send",
        "_slow",
        "_suspended",
        "_writer",
        "conflated",
        "dropped",
        "failed",
        "limits",
        "queued_bytes",
        "sent",
        "totals",
    )

    def __init__(self, send: Send, on_overflow_close: Callable[[int, str], None]) -> None:
        self._send = send
        self._on_overflow_close = on_overflow_close
        self.limits: QueueLimits | None = None
        self.totals: OutboundTotals | None = None
        self._queue: collections.deque[_Entry] | None = None
        self._keys: dict[Hashable, _Entry] | None = None
        self._control: collections.deque[Message] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._inflight = False
        #: True while the eager path may not be taken: failed, closed, or a write in flight
        #: without limits. One flag, because write_now reads it for every message.
        self._slow = False
        self._room: asyncio.Event | None = None
        self._closed = False
        self._inflight_done: asyncio.Event | None = None
        self._closer: asyncio.Task[None] | None = None
        #: The server's send coroutine started eagerly and suspended, until the writer finishes it.
        self._suspended: tuple[Coroutine[Any, Any, None], Any] | None = None
        #: The error that broke the connection's writes, once one did.
        self.failed: BaseException | None = None
        self.queued_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.conflated = 0

    # -- configuration and state ----------------------------------------------------------

    def configure(self, limits: QueueLimits, totals: OutboundTotals | None = None) -> None:
        """Bound this connection's queue; only the first configuration counts."""
        if self.limits is None:
            self.limits = limits
            self.totals = totals
            if totals is not None:
                totals._live.add(self)

    def release(self) -> None:
        """The connection ended: fold its counts into the totals and forget it."""
        totals = self.totals
        if totals is not None and self in totals._live:
            totals._live.discard(self)
            totals._sent_by_ended += self.sent

    @property
    def queued(self) -> int:
        """Application messages waiting in the queue."""
        return sum(1 for e in self._queue if e.app) if self._queue else 0

    @property
    def backlogged(self) -> bool:
        """True while a write is blocked and messages wait behind it."""
        return self._writer is not None

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
            return SLOW
        if self._writer is None:
            # _start() written out: this is the one copy on the per-message path (a call
            # costs ~500 instructions, see docs/internals.md).
            coro = self._send(message)
            try:
                yielded = coro.send(None)  # type: ignore[attr-defined]
            except StopIteration:
                self.sent += 1
                if self._control:
                    self._kick()
                return HANDLED
            except (OSError, RuntimeError) as exc:
                self._fail(exc)
                raise
            self._hand_to_writer(coro, yielded, _Entry(message, 0))
            return WAIT if self.limits is None else HANDLED
        limits = self.limits
        if limits is None:
            return SLOW
        size = message_size(message)
        if limits.policy == "block" and not self._fits(size):
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
        if self._writer is None:
            self._start(message, raise_errors=True)
            return
        size = message_size(message)
        if policy == "block" and not self._fits(size):
            policy = await self._wait_for_room(size, limits)
            if self.failed is not None:
                raise self.failed
            if self._closed:  # a close (ours or the application's) went out while this send waited
                raise RuntimeError("the connection is closing")
            if self._writer is None:  # the backlog drained while we waited
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
        if self.failed is not None or self._closed:
            return False
        if self._writer is None and not self._inflight:
            return self._start(message, raise_errors=False)
        limits = self.limits
        if limits is None:
            # A connection without limits has no queue: while a write is in flight a message
            # offered to it is dropped, and counted.
            self._count("dropped")
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
            self._start(message, raise_errors=False, app=False)
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
            self._slow = self._closed or self.failed is not None
            if self._inflight_done is not None:
                self._inflight_done.set()
            if self._control and not self._closed:
                self._kick()
        if message["type"] == "websocket.send":
            self._count_sent()

    async def _send_protocol(self, message: Message) -> None:
        """The application's accept/close: in order with its messages, never dropped."""
        if message["type"] == "websocket.close":
            self._closed = self._slow = True  # nothing may follow the application's close
        if self._writer is None:
            await self._send_inline(message)
            return
        self._enqueue_entry(_Entry(message, 0, app=False))
        if message["type"] == "websocket.close":
            await self.flush(self.limits.block_timeout if self.limits else 5.0)

    def _kick(self) -> None:
        """Start writing pending control messages after an inline write finished."""
        control = self._control
        if control and self._writer is None:
            self._start(control.popleft(), raise_errors=False, app=False)

    def _start(self, message: Message, *, raise_errors: bool, app: bool = True) -> bool:
        """Write the data frame ``message`` eagerly; if the write suspends, a writer task finishes it."""
        coro = self._send(message)
        try:
            yielded = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            if app:
                self.sent += 1
            if self._control:
                self._kick()
            return True
        except Exception as exc:
            if raise_errors:  # the application's own send: its error is its own, as from the server
                if isinstance(exc, (OSError, RuntimeError)):
                    self._fail(exc)
                raise
            # The library's messages and fan-out offers: whatever the server raised (a peer
            # gone, a protocol state error), this connection's writes are over, and no error
            # reaches the timer or the broadcast loop that asked.
            self._fail(exc)
            return False
        self._hand_to_writer(coro, yielded, _Entry(message, 0, app=app))
        return True

    def _hand_to_writer(self, coro: Any, yielded: Any, entry: _Entry) -> None:
        """A write suspended: a writer task finishes it, then drains what queues behind it."""
        if not isinstance(coro, Coroutine):  # pragma: no cover - a server whose send is not a coroutine
            raise RuntimeError("asgi_ws needs the server's send to be a coroutine")
        self._suspended = (coro, yielded)
        writer = self._writer = asyncio.get_running_loop().create_task(self._write_backlog(entry))
        # Cleanup runs as a done callback: a task cancelled before its first step never runs
        # its coroutine's finally blocks.
        writer.add_done_callback(self._writer_done)
        if self.totals is not None:
            self.totals.backlogged += 1

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if self._writer is writer:
            self._writer = None
        if self.totals is not None:
            self.totals.backlogged -= 1
        if self._room is not None:
            self._room.set()

    async def _write_backlog(self, first: _Entry) -> None:
        try:
            await self._finish_suspended()
            self._written(first)
            while True:
                if self._control:
                    entry = _Entry(self._control.popleft(), 0, app=False)
                elif self._queue:
                    entry = self._dequeue()
                else:
                    break
                await self._send(entry.message)
                self._written(entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nobody awaits the writer: the error ends this connection's writes
            self._fail(exc)

    def _written(self, entry: _Entry) -> None:
        if entry.app:
            self._count_sent()

    def _count_sent(self) -> None:
        self.sent += 1

    def _fits(self, size: int) -> bool:
        limits = self.limits
        assert limits is not None
        queue = self._queue
        if not queue:
            return True  # an empty queue takes any one message
        if limits.max_messages is not None and len(queue) >= limits.max_messages:
            return False
        return limits.max_bytes is None or self.queued_bytes + size <= limits.max_bytes

    def _enqueue(self, message: Message, size: int, policy: str, key: Hashable | None) -> bool:
        """Queue ``message`` behind the blocked write, applying ``policy`` if it does not fit."""
        limits = self.limits
        assert limits is not None
        if policy == "conflate":
            if key is None and limits.conflate_key is not None:
                key = limits.conflate_key(message)
            queued = self._keys.get(key) if key is not None and self._keys else None
            if queued is not None:  # a message for this key still waits: replace it in place
                self.queued_bytes += size - queued.size
                queued.message, queued.size = message, size
                self._count("conflated")
                return True
        elif policy not in POLICIES:
            raise ConfigurationError(f"overflow policy must be one of {sorted(POLICIES)}, not {policy!r}")
        else:
            key = None
        if self._fits(size):
            self._enqueue_entry(_Entry(message, size, key))
            return True
        if policy in ("block", "conflate"):
            policy = limits.fallback
        if policy == "drop_newest":
            self._count("dropped")
            return False
        if policy == "drop_oldest":
            while not self._fits(size) and self._drop_oldest():
                pass
            if not self._fits(size):  # only the app's own accept/close are queued: nothing to drop
                self._count("dropped")
                return False
            self._enqueue_entry(_Entry(message, size, key))
            return True
        # "close": the slow consumer goes, and the close path drops its queue.
        self._count("dropped")
        if self.totals is not None:
            self.totals.closed_for_slowness += 1
        self._on_overflow_close(int(limits.close_code), limits.close_reason)
        return False

    def _enqueue_entry(self, entry: _Entry) -> None:
        if self._queue is None:
            self._queue = collections.deque()
        self._queue.append(entry)
        if entry.app:
            self.queued_bytes += entry.size
            if entry.key is not None:
                if self._keys is None:
                    self._keys = {}
                self._keys[entry.key] = entry
            if self.totals is not None:
                self.totals.queued += 1

    def _dequeue(self) -> _Entry:
        assert self._queue
        entry = self._queue.popleft()
        self._forget(entry)
        if self._room is not None:
            self._room.set()
        return entry

    def _drop_oldest(self) -> bool:
        """Drop the oldest application message; False when only protocol messages are queued."""
        assert self._queue is not None
        for i, entry in enumerate(self._queue):
            if entry.app:
                del self._queue[i]
                self._forget(entry)
                self._count("dropped")
                return True
        return False

    def _forget(self, entry: _Entry) -> None:
        if not entry.app:
            return
        self.queued_bytes -= entry.size
        if entry.key is not None and self._keys is not None and self._keys.get(entry.key) is entry:
            del self._keys[entry.key]
        if self.totals is not None:
            self.totals.queued -= 1

    def _drop_queue(self) -> None:
        if self._queue:
            for entry in self._queue:
                if entry.app:
                    self._forget(entry)
                    self._count("dropped")
            self._queue.clear()
        if self._control:
            self._control.clear()

    def _count(self, counter: Literal["dropped", "conflated"]) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        if self.totals is not None:
            setattr(self.totals, counter, getattr(self.totals, counter) + 1)

    async def _wait_for_room(self, size: int, limits: QueueLimits) -> str:
        """Wait until ``size`` fits (return "block": enqueue it) or the timeout (return the fallback)."""
        if self._room is None:
            self._room = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.block_timeout
        while self._writer is not None and not self._fits(size):
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
            if self._suspended is not None:  # the writer was cancelled before it ever ran
                _abandon(*self._suspended)
                self._suspended = None
        while self._inflight:  # the application's own write (no queue) goes first
            if self._inflight_done is None:
                self._inflight_done = asyncio.Event()
            self._inflight_done.clear()
            await self._inflight_done.wait()
        try:
            await self._send(message)
        except Exception as exc:  # the peer is gone, or the server refuses: the socket is closing anyway
            logger.debug("close frame not written: %r", exc)

    async def _finish_suspended(self) -> None:
        """Finish the server's send coroutine started by hand (``coro.send(None)``) that suspended.

        This is what ``asyncio.Task`` does for a coroutine it runs: wait for the future it
        awaits, then resume it so it reads the result itself. On cancellation the write is
        abandoned the way ``Task.cancel()`` would abandon it (see :func:`_abandon`), so a
        server that checks its own waiters (websockets' drain) stays consistent.
        """
        assert self._suspended is not None
        coro, yielded = self._suspended
        loop = asyncio.get_running_loop()
        try:
            while True:
                if yielded is None:  # a bare yield, as asyncio.sleep(0) does
                    await asyncio.sleep(0)
                else:
                    if not hasattr(yielded, "add_done_callback"):
                        coro.close()
                        raise RuntimeError("asgi_ws runs on asyncio servers only")
                    yielded._asyncio_future_blocking = False
                    waiter = loop.create_future()

                    def wake(_: object, waiter: asyncio.Future[None] = waiter) -> None:
                        if not waiter.done():
                            waiter.set_result(None)

                    yielded.add_done_callback(wake)
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        yielded.remove_done_callback(wake)
                        _abandon(coro, yielded)
                        raise
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    return
                self._suspended = (coro, yielded)
        finally:
            self._suspended = None


def _abandon(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Unwind a suspended send coroutine as ``Task.cancel()`` would: cancel the future it awaits, resume it."""
    if yielded is not None and hasattr(yielded, "cancel"):
        yielded.cancel()
    try:
        coro.send(None)
    except BaseException:
        return
    coro.close()


__all__ = ["POLICIES", "Outbound", "OutboundTotals", "QueueLimits", "message_size"]
