"""The per-connection shell that every live-connection feature of asgi_ws shares.

A WebSocket passing through several asgi_ws middlewares gets exactly one
:class:`Connection`, made by the outermost of them and found by the others in
``scope["asgi_ws"]["connection"]``. It owns what must exist once per socket:

- whether the handshake was accepted, and hooks to run at that moment and at the end;
- the one outbound path (:class:`~asgi_ws.outbound.Outbound`): eager writes, the bounded
  queue while backlogged, the library's control frames;
- the inbound path: size and rate limits, liveness times, and the control-protocol router,
  so control messages are decoded once and never reach the application;
- closing from the library's side (credentials expired, heartbeat lost, limits): one close
  frame goes to the server after the queue is dropped; the application's pending or next
  ``receive`` returns a ``websocket.disconnect`` carrying the library's code and reason, even
  when the close frame cannot be written because the client stopped reading; its later sends
  raise :class:`~asgi_ws.exceptions.ConnectionClosed`, the ``OSError`` the ASGI spec asks for;
- timers that die with the connection;
- its entry in the drain's registry while its application runs, and the 503 of a handshake
  arriving while the process drains (:mod:`asgi_ws.drain`).

Only the outermost layer wraps ``receive`` and ``send``; inner layers configure slots and
add hooks, so the per-message cost does not grow with the number of middlewares.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import log as _log
from ._asyncio import asyncio_required
from ._scope import client_address, log_path, namespace
from .close_codes import truncate_reason
from .drain import LIVE, draining, left, refuse
from .exceptions import ConfigurationError, ConnectionClosed
from .outbound import WAIT, Outbound
from .protocol import PREFIX
from .timers import Timer, timer_service
from .types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .control import ControlRouter
    from .delivery import Sink

logger = logging.getLogger("asgi_ws.connection")

if sys.version_info >= (3, 12):  # implemented in C
    _current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = asyncio.current_task
else:  # pragma: no cover - asyncio.current_task is Python code before 3.12: read its dict directly
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _current_task = _current_tasks.get

_KEY = "connection"
#: Seconds the end of the application waits for a backlog to be written before returning.
FLUSH_TIMEOUT = 5.0
#: Seconds the end of the application waits for the library's close frame to be written
#: (the client may not be reading); uvicorn closes the socket once the application returns.
CLOSE_TIMEOUT = 10.0


class ConnectionCounts:
    """Process-wide counts of asgi_ws connections, read by ``asgi_ws.metrics`` when scraped."""

    __slots__ = ("closed_by_code", "open", "total")

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        #: Closes the library started, by close code (heartbeat timeouts, slow consumers...).
        self.closed_by_code: dict[int, int] = {}


#: The counts of this process.
COUNTS = ConnectionCounts()

# Verdicts of an inbound limiter (middleware/ratelimit.py): 0.0 admits, a positive number
# delays the message by that many seconds, and these two drop it or close the connection.
DROP = -1.0
CLOSE = -2.0


class Connection:
    """State and controls of one WebSocket connection, shared by every asgi_ws layer.

    Applications rarely need it; :func:`connection_of` returns it for those that do (queue
    depth and drop counters in ``conn.outbound.stats()``, heartbeat RTT...).
    """

    # Slots: one of these exists per open socket, so its size is a per-connection cost.
    __slots__ = (
        "_control",
        "_depth",
        "_done",
        "_extras",
        "_interrupting",
        "_loop",
        "_on_accept",
        "_on_end",
        "_receive",
        "_receiver",
        "_running",
        "_sink",
        "_timers",
        "accepted",
        "app_closed",
        "close_code",
        "close_reason",
        "ended",
        "heartbeat",
        "last_activity",
        "last_inbound",
        "limiter",
        "outbound",
        "scope",
        "time",
        "track_activity",
        "track_inbound",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # trio (an ASGI server on it, TestClient(backend="trio")): say so, once
            raise asyncio_required() from None
        self._done = _done(self._loop)
        #: The clock of every connection-level time: the loop's monotonic clock.
        self.time: Callable[[], float] = time.monotonic
        #: The one outbound path of this socket.
        self.outbound = Outbound(send, self.close)
        #: True once the application's ``websocket.accept`` went out.
        self.accepted = False
        #: True once the server reported the disconnect or the application returned.
        self.ended = False
        #: Code and reason of a close the library started, else None.
        self.close_code: int | None = None
        self.close_reason = ""
        self.app_closed = False
        #: Time of the last inbound message, kept once a feature asks (``track_inbound``), and
        #: of the last application message either way, kept once one asks (``track_activity``).
        self.track_inbound = False
        self.track_activity = False
        self.last_inbound = 0.0
        self.last_activity = 0.0
        #: Inbound size/rate limiter; None when no RateLimitMiddleware is present.
        self.limiter: Any = None
        #: The heartbeat state (``.rtt``...); None when no HeartbeatMiddleware is present.
        self.heartbeat: Any = None
        self._control: ControlRouter | None = None
        self._sink: Sink | None = None
        # Created on first use: most connections never need some of them.
        self._extras: dict[str, Any] | None = None
        self._on_accept: list[Callable[[], object]] | None = None
        self._on_end: list[Callable[[], object]] | None = None
        self._timers: list[Timer] | None = None
        self._depth = 0
        self._running = False
        self._receiver: asyncio.Task[Any] | None = None
        self._interrupting = False
        COUNTS.open += 1
        COUNTS.total += 1

    @property
    def extras(self) -> dict[str, Any]:
        """Free-form per-connection data of library features (heartbeat state...)."""
        if self._extras is None:
            self._extras = {}
        return self._extras

    @property
    def sink(self) -> Sink:
        """Where the library's fan-out hands this connection's messages (:mod:`asgi_ws.delivery`):
        the outbound path, or the resumable session that installed itself."""
        return self._sink if self._sink is not None else self.outbound

    @sink.setter
    def sink(self, sink: Sink | None) -> None:
        self._sink = sink

    # -- features ------------------------------------------------------------------

    @property
    def control(self) -> ControlRouter:
        """The control-protocol router of this connection, created on first use.

        Once it exists, text frames starting with the control prefix are handled by the
        library and never reach the application.
        """
        if self._control is None:
            from .control import ControlRouter

            self._control = ControlRouter(self)
        return self._control

    def track(self, *, inbound: bool = False, activity: bool = False) -> None:
        """Start maintaining :attr:`last_inbound` and/or :attr:`last_activity` (each costs a clock read a message)."""
        now = self.time()
        if inbound and not self.track_inbound:
            self.track_inbound = True
            self.last_inbound = now
        if activity and not self.track_activity:
            self.track_activity = True
            self.last_activity = now

    def set_limiter(self, limiter: Any) -> None:
        if self.limiter is not None:
            raise ConfigurationError("two RateLimitMiddleware layers on one connection: keep one")
        self.limiter = limiter

    # -- hooks -----------------------------------------------------------------------

    def on_accept(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` right after the handshake is accepted (at once if it already was)."""
        if self.accepted:
            callback()
        elif self._on_accept is None:
            self._on_accept = [callback]
        else:
            self._on_accept.append(callback)

    def on_end(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once when the connection ends, whoever ended it."""
        if self.ended:
            callback()
        elif self._on_end is None:
            self._on_end = [callback]
        else:
            self._on_end.append(callback)

    def call_at_wall_time(self, wall_time: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` when ``time.time()`` reaches ``wall_time``, unless the connection ended first.

        Credential expiry is wall-clock time (a token's ``exp``); the timer service runs on
        the loop's monotonic clock, so the delay is converted once, here.
        """
        return self.call_later(max(0.0, wall_time - time.time()), callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` after ``delay`` seconds, unless the connection ended first."""
        timer = timer_service().call_later(delay, callback)
        timers = self._timers
        if timers is None:
            self._timers = [timer]
        else:
            timers.append(timer)
            if len(timers) > 16:  # long-lived connections re-arm timers: forget the spent ones
                self._timers = [t for t in timers if not t.cancelled]
        return timer

    # -- closing ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once the library decided to close this connection."""
        return self.close_code is not None

    def close(self, code: int, reason: str) -> None:
        """Close the connection from the library's side; synchronous, safe from a timer callback.

        Idempotent: the first call wins; calls after the connection ended, or after the
        application closed it itself, do nothing.
        """
        if self.close_code is not None or self.ended or self.app_closed:
            return
        self.close_code = int(code)
        self.close_reason = truncate_reason(reason)
        COUNTS.closed_by_code[self.close_code] = COUNTS.closed_by_code.get(self.close_code, 0) + 1
        logger.info(
            '%s - "WebSocket %s" closed by asgi_ws: %d %s',
            client_address(self.scope),
            log_path(self.scope),
            self.close_code,
            self.close_reason,
        )
        self.outbound.close(self.close_code, self.close_reason)
        receiver = self._receiver
        if receiver is not None and not receiver.done() and receiver is not _current_task(self._loop):
            # The application waits in receive() in another task: wake it with the disconnect
            # now rather than when (or if) the server reports the close. A close made inside
            # receive() itself (a limit, a control message) is seen by the receive loop when
            # the call returns: cancelling our own task would cancel the application's next
            # await, and with it its clean-up.
            self._interrupting = True
            receiver.cancel()

    def _disconnect(self) -> Message:
        return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}

    # -- the wrapped receive/send of the outermost layer -------------------------------------

    async def receive(self) -> Message:
        if self.close_code is not None:
            return self._library_disconnect()
        task = self._receiver = _current_task(self._loop)
        try:
            while True:
                message = await self._receive()
                if message["type"] != "websocket.receive":
                    if message["type"] == "websocket.disconnect":
                        if self.close_code is not None:
                            message = self._disconnect()
                        self._end()
                    return message
                if self.track_inbound:
                    now = self.last_inbound = self.time()
                else:
                    now = 0.0
                limiter = self.limiter
                if limiter is not None:
                    verdict = limiter.check(message, now or self.time())
                    if not verdict and limiter.shared is not None:
                        verdict = await limiter.check_shared()
                    if verdict:
                        if verdict == DROP:
                            continue
                        if verdict == CLOSE:  # the limiter closed the connection
                            return self._library_disconnect()
                        await asyncio.sleep(verdict)  # DELAY: hold the message back
                text = message.get("text")
                if text is not None and self._control is not None and text.startswith(PREFIX):
                    # A heartbeat's ping or pong, the control message of every idle connection,
                    # is taken without the router's decoding (heartbeat.py: answered exactly so).
                    heartbeat = self.heartbeat
                    if heartbeat is not None and heartbeat.take(text):
                        continue
                    await self._control.handle(text)
                    if self.close_code is not None:  # the message's handling closed the connection
                        return self._library_disconnect()
                    continue
                if self.track_activity:
                    self.last_activity = self.time()  # control messages are not activity
                return message
        except asyncio.CancelledError:
            if not self._interrupting or task is None:
                raise
            self._interrupting = False
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None and uncancel() > 0:
                raise  # cancelled from outside as well (the server is stopping the app): honour it
            return self._library_disconnect()
        finally:
            self._receiver = None

    def _library_disconnect(self) -> Message:
        """End the connection on the application's side: the disconnect of the library's close."""
        self._end()
        return self._disconnect()

    def send(self, message: Message) -> Awaitable[None]:
        """The application's ``send``: returns an awaitable, as ASGI requires.

        It is a plain function, not a coroutine function: a data frame that can be written
        (or queued) right away is handled here and an already-completed future returned, so
        the hottest path of the library costs no coroutine. Anything that must wait returns
        a coroutine.
        """
        if self.close_code is None and message["type"] == "websocket.send":
            try:
                written = self.outbound.write_now(message)
            except (OSError, RuntimeError) as exc:
                return self._raise(exc)
            if written:
                if self.track_activity:
                    self.last_activity = self.time()
                if written == WAIT:
                    return self._wait_written()
                return self._done
        return self._send_slow(message)

    async def _raise(self, exc: BaseException) -> None:
        raise exc

    async def _wait_written(self) -> None:
        try:
            await self.outbound.wait_written()
        except RuntimeError:
            if self.close_code is not None:  # our close abandoned the write
                raise ConnectionClosed(self.close_code, self.close_reason) from None
            raise

    async def _send_slow(self, message: Message) -> None:
        if self.close_code is not None:
            if message["type"] == "websocket.close":
                return  # the library already closed; the application's own close is moot
            raise ConnectionClosed(self.close_code, self.close_reason)
        if self.track_activity:
            self.last_activity = self.time()
        try:
            await self.outbound.send(message)
        except RuntimeError:
            # A server refuses sends after a close frame went out; if that close was ours,
            # report it the ASGI way rather than as the server's RuntimeError.
            if self.close_code is not None:
                raise ConnectionClosed(self.close_code, self.close_reason) from None
            raise
        if not self.accepted or (self.app_closed is False and message["type"] == "websocket.close"):
            self._after_protocol_message(message["type"])

    def _after_protocol_message(self, message_type: str) -> None:
        if message_type == "websocket.accept" and not self.accepted:
            self.accepted = True
            now = self.time()
            self.last_inbound = self.last_activity = now
            hooks, self._on_accept = self._on_accept, None
            for hook in hooks or ():
                hook()
        elif message_type == "websocket.close":
            self.app_closed = True

    # -- lifetime ------------------------------------------------------------------------------

    def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Run ``app``; the outermost layer's call ends the connection when the app returns.

        Inner layers get ``app(...)`` itself back, so they keep no frame of their own here:
        every suspended frame is memory held for as long as the connection lives.
        """
        if self._running:
            return app(scope, receive, send)
        self._running = True
        return self._run_outermost(app, scope, receive, send)

    async def _run_outermost(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if not _log.settled:  # the process's first connection: the server configured logging by now
            _log.settle()
        if draining(self._loop):  # shutting down (asgi_ws.drain): refused before the app runs
            try:
                await refuse(scope, send)
            finally:
                self._end()
            return
        LIVE.add(self)  # what a drain closes: one set entry per running connection
        try:
            await app(scope, receive, send)
        finally:
            try:
                try:
                    if self.close_code is not None:
                        await self.outbound.wait_closed(CLOSE_TIMEOUT)
                    elif self.outbound.backlogged:
                        await self.outbound.flush(FLUSH_TIMEOUT)
                except asyncio.CancelledError:
                    # Cancelled while the library waits for its close frame or the backlog to be
                    # written: the server gave up on it (uvicorn's graceful-shutdown timeout
                    # cancels every connection's task). The application has finished; what is
                    # unwritten is lost either way, and a traceback per connection (12,000 at
                    # once in a drain of a loaded worker) would bury the drain's own report.
                    pass
                self._end()
            finally:
                left(self)

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        COUNTS.open -= 1
        self.outbound.release()
        for timer in self._timers or ():
            timer.cancel()
        self._timers = self._on_accept = None
        if self.heartbeat is not None:  # its timer, kept by the heartbeat itself
            self.heartbeat.stop()
        hooks, self._on_end = self._on_end, None
        for hook in hooks or ():
            try:
                hook()
            except Exception:
                logger.exception("asgi_ws connection end hook failed")


_done_futures: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = weakref.WeakKeyDictionary()


def _done(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """An already-completed future of ``loop``: awaiting it returns at once, without a coroutine."""
    future = _done_futures.get(loop)
    if future is None:
        future = _done_futures[loop] = loop.create_future()
        future.set_result(None)
    return future


def attach(scope: Scope, receive: Receive, send: Send) -> tuple[Connection, Receive, Send]:
    """Return the connection of ``scope`` and the ``receive``/``send`` a layer should pass inward.

    The first (outermost) caller creates the connection and gets its wrapped callables;
    later callers get the existing connection and their own callables back unchanged. The
    connection is kept in the scope's library namespace, added in place (see
    :func:`asgi_ws._scope.namespace`).
    """
    ns = namespace(scope)
    conn = ns.get(_KEY)
    if conn is not None:
        return conn, receive, send
    conn = ns[_KEY] = Connection(scope, receive, send)
    return conn, conn.receive, conn.send


def attach_session(scope: Scope, receive: Receive, send: Send) -> tuple[Scope, Connection, Receive, Send]:
    """What every session middleware does first: own the scope, attach, speak the control protocol.

    Returns the scope to pass inward, the connection, and the ``receive``/``send`` to pass inward.
    """
    conn, receive, send = attach(scope, receive, send)
    conn.control  # noqa: B018 - creating the router makes the connection speak the protocol
    return scope, conn, receive, send


def connection_of(scope: Scope) -> Connection | None:
    """Return the asgi_ws :class:`Connection` of ``scope``, or None outside an asgi_ws stack."""
    ns = scope.get("asgi_ws")
    return None if ns is None else ns.get(_KEY)


__all__ = ["COUNTS", "Connection", "ConnectionCounts", "attach", "attach_session", "connection_of"]
