"""The Python client: the browser client's behaviour (``asgi-ws.js``) on the ``websockets`` library.

One :class:`Client` is one logical connection that outlives its sockets: it says ``hello``,
answers heartbeat pings and sends its own, reconnects with full-jitter backoff, keeps the
resumable session of a server running ``ResumeMiddleware``, restores pub/sub subscriptions,
and hands the application only data frames. Decisions live in :mod:`.policy` and
:mod:`.resume`; this module moves frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Generator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..exceptions import MissingDependencyError
from ..protocol import PREFIX, VERSION, ProtocolError, decode, encode
from .events import Event, EventKind, EventStream
from .exceptions import (
    ClientClosed,
    ClientGaveUp,
    HandshakeRefused,
    RequestInterrupted,
    RequestRefused,
    SendBufferFull,
    ServerClosed,
)
from .policy import ACK_EVERY, Attempts, Backoff, ack_due, close_action, heartbeat_step, refusal_action
from .resume import ResumeState

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
    from websockets.typing import Subprotocol
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "asgi_ws.client needs the websockets library (>= 13): pip install 'websockets>=13'"
    ) from exc

logger = logging.getLogger("asgi_ws.client")

Data = str | bytes
#: A ticket, or a callable (sync or async) returning a fresh one before each connection.
TicketSource = str | Callable[[], str | Awaitable[str]]

#: websockets options the client sets itself.
_RESERVED_OPTIONS = frozenset({"uri", "subprotocols", "additional_headers", "open_timeout"})


class Client:
    """A reconnecting, resuming asgi_ws client. Make it with :func:`connect`.

    Use it as ``async with connect(url) as client:`` (or ``client = await connect(url)`` and
    ``await client.close()`` when done). Iterate it for data frames (``str`` or ``bytes``);
    control messages never appear there.
    """

    def __init__(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        ticket: TicketSource | None = None,
        ticket_param: str = "ticket",
        resume: bool = True,
        heartbeat: bool = True,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        max_queue: int = 1024,
        max_pending: int = 100,
        stop_codes: Collection[int] = (),
        on_event: Callable[[Event], object] | None = None,
        **options: Any,
    ) -> None:
        reserved = _RESERVED_OPTIONS & options.keys()
        if reserved:
            raise TypeError(f"connect() sets {', '.join(sorted(reserved))} itself; use its own parameters")
        if max_queue < 1 or max_pending < 0:
            raise ValueError("max_queue must be >= 1 and max_pending >= 0")
        self.url = url
        self._subprotocols = [Subprotocol(p) for p in subprotocols] if subprotocols else None
        self._headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
        self._ticket = ticket
        self._ticket_param = ticket_param
        self._heartbeat = heartbeat
        self._attempts = Attempts(backoff if backoff is not None else Backoff())
        self._open_timeout = open_timeout
        self._max_pending = max_pending
        self._stop_codes = frozenset(stop_codes)
        self._on_event = on_event
        self._options = options
        self._resume = ResumeState(resume)

        self._inbox = _Inbox(max_queue)
        self._pending: deque[tuple[Data, asyncio.Future[None], int | None]] = deque()
        self._streams: list[EventStream] = []
        self._ws: ClientConnection | None = None
        self._ready = False  # open, resume answered, subscriptions restored, pending flushed
        self._ready_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._closing = False
        self._closing_event: asyncio.Event | None = None
        self._closed: ClientClosed | None = None
        self._local_close: tuple[int, str] | None = None

        # Pub/sub: what to restore after a reconnection, and the requests awaiting an answer.
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._waiters: dict[tuple[str, object], list[asyncio.Future[dict[str, Any]]]] = {}
        self._inflight: dict[str, deque[object]] = {"subscribe": deque(), "unsubscribe": deque(), "publish": deque()}
        self._subscribed_here: set[str] = set()  # channels subscribed on the current connection
        self._ids = itertools.count(1)

        # Heartbeat of the current connection.
        self._last_received = 0.0
        self._ping_sent_at: float | None = None
        self._ping_id = 0
        self._last_ack_at = 0.0
        self._hb: tuple[float, float] | None = None

        #: Features the server announced in its last ``welcome`` (empty before it).
        self.features: dict[str, Any] = {}
        #: Round-trip time in seconds of the client's last answered ping.
        self.rtt: float | None = None

    # -- opening and closing -----------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return await self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Client]:
        return self._start().__await__()

    async def _start(self) -> Client:
        """Open the first connection; return once it is open, or raise why the client stopped."""
        if self._task is not None:
            raise RuntimeError("this client was already started")
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        self._ready_event = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"asgi_ws client {_redact(self.url)}")
        try:
            await asyncio.shield(self._started)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (code 1000 by default) and stop reconnecting; idempotent.

        With resumption, a close by the client ends the session on the server for good.
        Pending sends and requests raise :class:`ClientClosed`; iteration ends.
        """
        self._closing = True
        if self._closing_event is not None:
            self._closing_event.set()
        task = self._task
        if task is None or task.done():
            self._finish(ClientClosed(code, reason or "closed by the client"))
            return
        ws = self._ws
        if ws is not None:
            self._local_close = (code, reason or "closed by the client")
            try:
                await ws.close(code, reason)
            except Exception:  # the connection is gone either way
                logger.debug("asgi_ws client: close failed", exc_info=True)
            await asyncio.wait([task], timeout=1.0)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._finish(ClientClosed(code, reason or "closed by the client"))

    # -- application data ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        while True:
            try:
                message = await self.recv()
            except ClientClosed as exc:
                if type(exc) is ClientClosed and exc.code == 1000:
                    return  # close() or a normal close by the server: a clean end
                raise
            yield message

    async def recv(self) -> Data:
        """Return the next data frame (``str`` or ``bytes``), waiting across reconnections.

        Raises:
            ClientClosed: the client stopped (after the frames received before that were
                returned); a subclass says why: :class:`ClientGaveUp`,
                :class:`ServerClosed`, :class:`HandshakeRefused`.
        """
        return await self._inbox.get()

    async def send(self, message: Data) -> None:
        """Send a data frame: ``str`` as text, ``bytes`` as binary.

        While disconnected the message waits for the next connection (``max_pending``
        messages at most) and ``send`` returns once it was written. A message written just
        before a drop may be lost: resumption replays what the server sent, not what the
        client sent.

        Raises:
            SendBufferFull: disconnected, and ``max_pending`` messages already wait.
            ClientClosed: the client stopped (or stops while the message waits).
        """
        if isinstance(message, str) and message.startswith(PREFIX):
            raise ValueError('messages starting with {"$ws" are reserved for the control protocol')
        await self._send_frame(message)

    async def send_json(self, obj: Any) -> None:
        """Send ``obj`` serialised as JSON in a text frame (see :meth:`send`)."""
        import json

        await self.send(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    async def send_control(self, op: str, fields: Mapping[str, Any] | None = None) -> None:
        """Send the control message ``op`` as is, for operations without a helper (``presence``...).

        Answers arrive as ``control`` events (or ``error`` events). Waits while disconnected
        like :meth:`send`.
        """
        await self._send_frame(encode(op, fields))

    # -- pub/sub (PubSubApp, docs/protocol.md section 7) ---------------------------------------

    async def subscribe(
        self, channel: str, *, presence: bool = False, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Subscribe to ``channel``; return the server's ``subscribed`` answer.

        The subscription is kept and restored after every reconnection that did not resume
        the session. While disconnected, this waits for the next connection.

        Args:
            presence: also receive ``presence_diff`` messages (``control`` events) and the
                member list in the answer (``members``).
            meta: shown to other members by presence (at most 1 KiB of JSON).

        Raises:
            RequestRefused: the server refused (``forbidden``, ``too_many_subscriptions``,
                ``unknown_op`` when the server has no pub/sub); the subscription is dropped.
            ClientClosed: the client stopped first.
        """
        self._check_open()
        fields: dict[str, Any] = {"channel": channel}
        if presence:
            fields["presence"] = True
        if meta:
            fields["meta"] = dict(meta)
        self._subscriptions[channel] = fields
        waiter = self._wait_for(("subscribe", channel))
        if self._ready and self._ws is not None:
            self._subscribed_here.add(channel)
            await self._request(self._ws, "subscribe", channel, fields)
        # Otherwise the next connection subscribes it once its resumption is settled.
        return await waiter

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` and forget the subscription (not restored any more).

        Raises:
            RequestRefused: the server refused.
        """
        self._check_open()
        self._subscriptions.pop(channel, None)
        if not (self._ready and self._ws is not None):
            return  # the next connection will not subscribe it
        waiter = self._wait_for(("unsubscribe", channel))
        await self._request(self._ws, "unsubscribe", channel, {"channel": channel})
        await waiter

    async def publish(self, channel: str, data: Any) -> None:
        """Publish the JSON value ``data`` on ``channel``; return once the server confirmed it.

        While disconnected, this waits for the next connection like :meth:`send`.

        Raises:
            RequestRefused: the server refused (``forbidden``, ``too_large``...).
            RequestInterrupted: the connection dropped before the confirmation; the
                publish may or may not have happened and is not re-sent.
            SendBufferFull, ClientClosed: as for :meth:`send`.
        """
        self._check_open()
        request_id = next(self._ids)
        waiter = self._wait_for(("publish", request_id))
        frame = encode("publish", {"channel": channel, "data": data, "id": request_id})
        try:
            await self._send_frame(frame, publish_id=request_id)
        except BaseException:
            self._waiters.pop(("publish", request_id), None)
            waiter.cancel()
            raise
        await waiter

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._ws is not None

    @property
    def closed(self) -> bool:
        """Whether the client stopped for good."""
        return self._closed is not None

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose for the current connection."""
        return None if self._ws is None else self._ws.subprotocol

    @property
    def session_id(self) -> str | None:
        """Id of the resumable session, when the server runs ``ResumeMiddleware``."""
        return self._resume.session_id

    @property
    def received(self) -> int:
        """Data frames received in the current session (the count sent when resuming)."""
        return self._resume.received

    @property
    def subscriptions(self) -> frozenset[str]:
        """Channels this client subscribed to (and restores after a reconnection)."""
        return frozenset(self._subscriptions)

    def events(self, maxlen: int = 1000) -> EventStream:
        """An async iterator over the events from now on, ending after ``closed``.

        It keeps at most ``maxlen`` unread events, dropping the oldest beyond that.
        """
        stream = EventStream(maxlen)
        if self._closed is not None:
            stream.end()
        else:
            self._streams.append(stream)
        return stream

    # -- the connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    ws = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    stop, reason = self._classify(exc)
                    if stop is not None:
                        self._stop(stop, exc)
                        return
                    if not await self._backoff(loop.time(), None, reason, exc):
                        return
                    continue
                self._attempts.connected(loop.time())
                code, reason = await self._serve(ws)
                self._emit("disconnected", code=code, reason=reason)
                if self._resume.on_close(code):  # 4404: the next connection starts a new session
                    self._emit("session_lost", code=code, reason=reason)
                if self._closing:
                    self._stop(ClientClosed(1000, "closed by the client"))
                    return
                action = close_action(code, can_refresh=callable(self._ticket), stop_codes=self._stop_codes)
                if action == "end":
                    self._stop(ClientClosed(code, reason or "closed by the server"))
                    return
                if action == "stop":
                    self._stop(ServerClosed(code, reason))
                    return
                if not await self._backoff(loop.time(), code, reason, None):
                    return
        except asyncio.CancelledError:
            if self._ws is not None:  # cancelled while a connection was opening or open
                self._ws.transport.abort()
            self._stop(ClientClosed(1000, "closed by the client"))
            raise
        except Exception as exc:  # a bug: stop loudly rather than hang the application
            logger.exception("asgi_ws client: connection loop failed")
            self._stop(ClientClosed(None, f"internal error: {exc!r}"), exc)

    async def _open(self) -> ClientConnection:
        params: dict[str, str] = {}
        if self._ticket is not None:
            ticket = self._ticket() if callable(self._ticket) else self._ticket
            if inspect.isawaitable(ticket):
                ticket = await ticket
            params[self._ticket_param] = str(ticket)
        params.update(self._resume.query())
        ws = await ws_connect(
            _with_query(self.url, params),
            subprotocols=self._subprotocols,
            additional_headers=self._headers or None,
            open_timeout=self._open_timeout,
            **self._options,
        )
        self._ws = ws
        return ws

    def _classify(self, exc: Exception) -> tuple[ClientClosed | None, str]:
        """What a failed connection attempt means: the exception to stop with (None: retry), and why."""
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            body = bytes(exc.response.body or b"").decode("utf-8", "replace")[:200]
            if refusal_action(status, can_refresh=callable(self._ticket)) == "stop":
                return HandshakeRefused(status, body), f"HTTP {status}: {body}"
            return None, f"HTTP {status}: {body}"
        if isinstance(exc, InvalidURI):
            return ClientClosed(None, str(exc)), str(exc)
        return None, f"{type(exc).__name__}: {exc}"

    async def _backoff(self, now: float, code: int | None, reason: str, exc: BaseException | None) -> bool:
        """Wait before the next attempt; return False when the client gave up or was closed."""
        delay = self._attempts.next_delay(now, code)  # at once after 1001/1012 (policy.RESTART_CODES)
        attempt = self._attempts.attempt
        if delay is None:
            self._emit("gave_up", code=code, reason=reason, attempt=attempt, exception=exc)
            self._stop(ClientGaveUp(attempt, code, reason), exc)
            return False
        self._emit("reconnecting", code=code, reason=reason, attempt=attempt, delay=delay, exception=exc)
        logger.info("asgi_ws client: reconnecting in %.2f s (attempt %d): %s", delay, attempt, reason or code)
        assert self._closing_event is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing_event.wait(), delay)
        if self._closing:
            self._stop(ClientClosed(1000, "closed by the client"))
            return False
        return True

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        """Run one open connection until it ends; return the close code and reason."""
        loop = asyncio.get_running_loop()
        self._local_close = None
        self._last_received = self._last_ack_at = loop.time()
        self._ping_sent_at, self._hb = None, None
        for inflight in self._inflight.values():
            inflight.clear()
        self._subscribed_here.clear()
        if self._started is not None and not self._started.done():
            self._started.set_result(None)
        self._emit("connected")
        ticker = asyncio.create_task(self._tick_until_closed(ws, loop.time()))
        try:
            await self._control(ws, "hello", {"v": VERSION})
            if not self._resume.pending:
                await self._restore(ws, restored=())
            async for frame in ws:
                await self._on_frame(ws, frame)
        except ConnectionClosed:
            pass
        finally:
            ticker.cancel()
            self._ws = None
            self._ready = False
            if self._ready_event is not None:
                self._ready_event.clear()
            self._interrupt_publishes()
            for key in [k for k in self._waiters if k[0] == "unsubscribe"]:  # nothing to undo on the next one
                self._resolve(key, {"$ws": "unsubscribed", "channel": key[1]})
        if self._local_close is not None:
            return self._local_close
        code = ws.close_code if ws.close_code is not None else 1006
        return code, ws.close_reason or ""

    async def _restore(self, ws: ClientConnection, restored: Collection[str]) -> None:
        """Subscribe again (except ``restored`` channels), flush waiting sends, then become ready.

        Subscriptions and sends made meanwhile are taken too: the client becomes ready only
        when nothing is left, with no ``await`` between that check and ``_ready``.
        """
        while True:
            todo = [(c, f) for c, f in self._subscriptions.items() if c not in self._subscribed_here]
            for channel, fields in todo:
                self._subscribed_here.add(channel)
                if channel in restored:  # the server restored it with the session
                    self._resolve(("subscribe", channel), {"$ws": "subscribed", "channel": channel})
                else:
                    await self._request(ws, "subscribe", channel, fields)
            if not todo and not self._pending:
                break
            while self._pending:
                message, future, publish_id = self._pending[0]
                if not future.done():
                    if publish_id is not None:
                        self._inflight["publish"].append(publish_id)
                    try:
                        await ws.send(message)
                    except ConnectionClosed:
                        if publish_id is not None:
                            self._inflight["publish"].remove(publish_id)
                        raise  # it stays queued for the next connection
                    if not future.done():
                        future.set_result(None)
                self._pending.popleft()
        self._ready = True
        if self._ready_event is not None:
            self._ready_event.set()

    async def _on_frame(self, ws: ClientConnection, frame: Data) -> None:
        self._last_received = asyncio.get_running_loop().time()
        if isinstance(frame, str) and frame.startswith(PREFIX):
            try:
                message = decode(frame, max_length=None)  # the server's frames: bounded by max_size
            except ProtocolError as exc:
                logger.warning("asgi_ws client: ignored a malformed control message: %s", exc)
                return
            await self._on_control(ws, message)
            return
        seq = self._resume.count()
        if self._resume.active and seq % ACK_EVERY == 0:
            await self._ack(ws)
        await self._inbox.put(frame)

    async def _on_control(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        op = message["$ws"]
        if op == "ping":
            await self._control(ws, "pong", {"id": message["id"]} if "id" in message else None)
        elif op == "pong":
            if self._ping_sent_at is not None and message.get("id") == self._ping_id:
                self.rtt = asyncio.get_running_loop().time() - self._ping_sent_at
            self._ping_sent_at = None
        elif op == "welcome":
            self._on_welcome(message)
        elif op == "session":
            self._resume.on_session(message)
        elif op == "resumed":
            rooms = self._resume.on_resumed(message)
            self._emit("resumed", detail=message)
            await self._restore(ws, restored=rooms)
        elif op == "resume_failed":
            code, reason = str(message.get("code", "")), str(message.get("reason", ""))
            logger.info("asgi_ws client: resume failed (%s): %s", code, reason)
            if self._resume.on_resume_failed():  # (a new session the store could not create lost nothing)
                self._emit("resume_failed", code=code, reason=reason, detail=message)
                await self._restore(ws, restored=())
        elif op == "error":
            self._on_error(message)
        elif op == "subscribed":
            self._answered("subscribe", message.get("channel"), message)
        elif op == "unsubscribed":
            self._answered("unsubscribe", message.get("channel"), message)
        elif op == "published":
            self._answered("publish", message.get("id"), message)
        else:
            self._emit("control", detail=message)

    def _on_welcome(self, message: dict[str, Any]) -> None:
        features = message.get("features")
        self.features = dict(features) if isinstance(features, dict) else {}
        heartbeat = self.features.get("heartbeat")
        if self._heartbeat and isinstance(heartbeat, dict):
            interval, timeout = heartbeat.get("interval"), heartbeat.get("timeout")
            if _positive(interval) and _positive(timeout):
                self._hb = (float(interval), float(timeout))

    def _on_error(self, message: dict[str, Any]) -> None:
        code, text, ref = str(message.get("code", "")), str(message.get("message", "")), message.get("ref")
        logger.warning("asgi_ws client: server error %s: %s%s", code, text, f" (ref {ref})" if ref else "")
        self._emit("error", code=code, reason=text, detail=message)
        inflight = self._inflight.get(ref) if isinstance(ref, str) else None
        if inflight:  # the server answers a connection's requests in order: the oldest one failed
            key = inflight.popleft()
            if ref == "subscribe" and isinstance(key, str):
                self._subscriptions.pop(key, None)
            self._fail((str(ref), key), RequestRefused(code, text, str(ref)))

    async def _tick_until_closed(self, ws: ClientConnection, opened_at: float) -> None:
        """Run :meth:`_tick` until the connection closes: a step whose send raised (a failed
        ping) is logged and the heartbeat stays armed, so its timeout still finds a dead socket."""
        while True:
            try:
                await self._tick(ws, opened_at)
                return  # the heartbeat aborted the connection
            except ConnectionClosed:
                return  # the reader sees the end of the connection
            except Exception as exc:
                logger.warning("asgi_ws client: a heartbeat step failed, the heartbeat goes on: %r", exc)

    async def _tick(self, ws: ClientConnection, opened_at: float) -> None:
        """Per connection: the client's heartbeat, acks, and the deadline of a resume answer."""
        loop = asyncio.get_running_loop()
        while True:
            hb = self._hb
            await asyncio.sleep(min(0.25, hb[0] / 4) if hb else 0.25)
            now = loop.time()
            if hb is not None:
                action = heartbeat_step(
                    now, last_received=self._last_received, ping_sent_at=self._ping_sent_at,
                    interval=hb[0], timeout=hb[1],
                )  # fmt: skip
                if action == "ping":
                    self._ping_id += 1
                    self._ping_sent_at = now
                    await self._control(ws, "ping", {"id": self._ping_id})
                elif action == "dead":
                    logger.info("asgi_ws client: no answer to ping within %s s; reconnecting", hb[1])
                    self._local_close = (4408, "heartbeat timeout (client)")
                    ws.transport.abort()
                    return
            state = self._resume
            if state.active and ack_due(state.received, state.acked, now, self._last_ack_at):
                await self._ack(ws)
            if state.pending and now - opened_at >= self._open_timeout:  # a server without resumption now
                state.on_resume_failed()
                self._emit("resume_failed", code="unsupported", reason="no answer to the resume request")
                await self._restore(ws, restored=())

    async def _ack(self, ws: ClientConnection) -> None:
        self._resume.acked = self._resume.received
        self._last_ack_at = asyncio.get_running_loop().time()
        await self._control(ws, "ack", {"seq": self._resume.received})

    # -- sending -----------------------------------------------------------------------------

    async def _send_frame(self, frame: Data, publish_id: int | None = None) -> None:
        self._check_open()
        ws = self._ws
        # A socket already closing (the heartbeat gave up, a local abort) would swallow the frame.
        if ws is not None and self._ready and not self._pending and not ws.transport.is_closing():
            if publish_id is not None:
                self._inflight["publish"].append(publish_id)
            try:
                await ws.send(frame)
                return
            except ConnectionClosed:  # not written: wait for the next connection like any other message
                if publish_id is not None and publish_id in self._inflight["publish"]:
                    self._inflight["publish"].remove(publish_id)
        if len(self._pending) >= self._max_pending:
            raise SendBufferFull(f"{self._max_pending} messages already wait for a reconnection")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((frame, future, publish_id))
        await future

    async def _control(self, ws: ClientConnection, op: str, fields: Mapping[str, Any] | None = None) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader sees the end of the connection
            await ws.send(encode(op, fields))

    async def _request(self, ws: ClientConnection, op: str, key: object, fields: Mapping[str, Any]) -> None:
        self._inflight[op].append(key)
        await self._control(ws, op, fields)

    def _wait_for(self, key: tuple[str, object]) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    def _answered(self, op: str, key: object, message: dict[str, Any]) -> None:
        inflight = self._inflight[op]
        if key in inflight:
            inflight.remove(key)
        self._resolve((op, key), message)

    def _resolve(self, key: tuple[str, object], message: dict[str, Any]) -> None:
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(message)

    def _fail(self, key: tuple[str, object], exc: BaseException) -> None:
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_exception(exc)

    def _interrupt_publishes(self) -> None:
        inflight = self._inflight["publish"]
        while inflight:
            exc = RequestInterrupted("the connection dropped before the server confirmed the publish")
            self._fail(("publish", inflight.popleft()), exc)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._closing:
            raise ClientClosed(1000, "closed by the client")
        if self._task is None:
            raise RuntimeError("the client is not started: use `async with connect(...)` or `await connect(...)`")

    # -- ending ------------------------------------------------------------------------------

    def _stop(self, exc: ClientClosed, cause: BaseException | None = None) -> None:
        if cause is not None and exc is not cause:
            exc.__cause__ = cause
        self._finish(exc)

    def _finish(self, exc: ClientClosed) -> None:
        """The client stopped for good: fail whatever waits, end the iterators. Idempotent."""
        if self._closed is not None:
            return
        self._closed = exc
        self._ws = None
        self._ready = False
        if self._closing:  # close(): the application stops reading; drop what it did not read
            self._inbox.clear()
        self._inbox.end(exc)
        while self._pending:
            _, future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(exc)
        for key in list(self._waiters):
            self._fail(key, exc)
        if self._started is not None and not self._started.done():
            self._started.set_exception(exc)
        error = None if type(exc) is ClientClosed else exc
        self._emit("closed", code=exc.code, reason=exc.reason, exception=error)
        for stream in self._streams:
            stream.end()
        self._streams.clear()

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        event = Event(kind, **fields)
        for stream in self._streams:
            stream.push(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("asgi_ws client: the on_event callback failed on %s", kind)


class _Inbox:
    """The bounded queue of data frames between the connection and the application.

    When it is full the connection stops reading the socket, which pushes back on the
    server (whose backpressure policy then applies) instead of growing without bound.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Data] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._end: ClientClosed | None = None

    async def put(self, item: Data) -> None:
        while len(self._items) >= self._maxsize and self._end is None:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    async def get(self) -> Data:
        while not self._items:
            if self._end is not None:
                raise self._end
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def clear(self) -> None:
        self._items.clear()

    def end(self, exc: ClientClosed) -> None:
        self._end = exc
        self._readable.set()
        self._writable.set()


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ticket: TicketSource | None = None,
    ticket_param: str = "ticket",
    resume: bool = True,
    heartbeat: bool = True,
    backoff: Backoff | None = None,
    open_timeout: float = 10.0,
    max_queue: int = 1024,
    max_pending: int = 100,
    stop_codes: Collection[int] = (),
    on_event: Callable[[Event], object] | None = None,
    **options: Any,
) -> Client:
    """Connect to an asgi_ws endpoint; use as ``async with connect(url) as client:``.

    ``await connect(url)`` works too (then ``await client.close()``). Either waits for the
    first connection: reconnection attempts apply to it as to later ones, so it raises
    :class:`ClientGaveUp` after ``backoff.max_attempts`` failures, or
    :class:`HandshakeRefused` at once for a refusal that is not retried.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint.
        subprotocols: subprotocols to offer, in order of preference.
        headers: extra handshake headers (``Authorization``, ``Origin``...).
        ticket: a ticket (str) added as the ``ticket_param`` query parameter, or a callable
            (sync or async) returning a fresh one, called before every connection attempt;
            with a callable, 4401 closes and 401 refusals are retried with a new ticket.
        ticket_param: the query parameter the server's ``SignedTicket`` reads (``ticket``).
        resume: ask for a resumable session (``ws_resume``); harmless on servers without
            ``ResumeMiddleware``. False: every reconnection is a fresh connection.
        heartbeat: ping the server after the announced heartbeat ``interval`` of silence and
            reconnect when nothing answers within its ``timeout``. Server pings are always
            answered.
        backoff: reconnection policy (default ``Backoff()``: 0.5 s base, 30 s cap, forever,
            counter reset after 10 s up).
        open_timeout: seconds for one opening handshake; also how long the client waits for
            the answer to a resume request.
        max_queue: data frames received and not read yet by the application; when full, the
            client stops reading the socket (backpressure).
        max_pending: messages ``send``/``publish`` may hold while disconnected; then
            :class:`SendBufferFull`. 0: sending while disconnected fails at once.
        stop_codes: extra close codes after which the client does not reconnect.
        on_event: called with every :class:`Event` (synchronously; exceptions are logged).
        options: passed to :func:`websockets.asyncio.client.connect` (``ssl``,
            ``max_size``, ``ping_interval``, ``proxy``...).
    """
    return Client(
        url, subprotocols=subprotocols, headers=headers, ticket=ticket, ticket_param=ticket_param, resume=resume,
        heartbeat=heartbeat, backoff=backoff, open_timeout=open_timeout, max_queue=max_queue, max_pending=max_pending,
        stop_codes=stop_codes, on_event=on_event, **options,
    )  # fmt: skip


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` set in its query string (replacing parameters of the same name)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redact(url: str) -> str:
    """``url`` without its query string (which may carry a ticket or a resume token)."""
    return urlunsplit(urlsplit(url)._replace(query=""))


def _positive(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


__all__ = ["Client", "Data", "TicketSource", "connect"]
