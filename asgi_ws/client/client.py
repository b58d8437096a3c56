"""The Python client: the browser client's behaviour (``asgi-ws.js``) on the ``websockets`` library.

One :class:`Client` is one logical connection that outlives its sockets: it says ``hello``,
answers heartbeat pings and sends its own, reconnects with full-jitter backoff, keeps the
resumable session of a server running ``ResumeMiddleware``, restores pub/sub subscriptions,
and hands the application only data frames. This module is the application's side; the parts
live beside it: the connection loop and each socket's life (:mod:`.connection`), what each
control message does (:mod:`.dispatch`), requests awaiting answers (:mod:`.requests`), the
inbox (:mod:`.inbox`), events (:mod:`.events`), the decisions (:mod:`.policy`, :mod:`.resume`)
and the options (:mod:`.options`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..close_codes import CloseCode
from ..protocol import PREFIX, encode
from .connection import ConnectionClosed, Link, run
from .events import Emitter, EventStream
from .exceptions import ClientClosed, SendBufferFull
from .inbox import Data, Inbox
from .options import ClientOptions, Settings, TicketSource, Urls, UrlSource
from .policy import Attempts
from .requests import Requests
from .resume import ResumeState

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("asgi_ws.client")


class Client:
    """A reconnecting, resuming asgi_ws client. Make it with :func:`connect`.

    Use it as ``async with connect(url) as client:`` (or ``client = await connect(url)`` and
    ``await client.close()`` when done). Iterate it for data frames (``str`` or ``bytes``);
    control messages never appear there.

    Args:
        url: where to connect (see :func:`connect`).
        options: see :class:`~asgi_ws.client.ClientOptions` and :func:`connect`.
    """

    def __init__(self, url: UrlSource, **options: Unpack[ClientOptions]) -> None:
        self._settings = Settings.of(options)
        #: Where the client connects, as given: a URL, a list of URLs or a callable.
        self.url = url
        self._urls = Urls(url)
        self._resume = ResumeState(self._settings.resume)
        self._attempts = Attempts(self._settings.backoff)
        self._inbox = Inbox(self._settings.max_queue)
        self._requests = Requests()
        self._events = Emitter(self._settings.on_event)
        #: Sends waiting for a connection: (frame, future resolved once written, publish id).
        self._pending: deque[tuple[Data, asyncio.Future[None], int | None]] = deque()
        #: Pub/sub subscriptions to restore after a reconnection: channel -> subscribe fields.
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._link: Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._closing = False
        self._closing_event = asyncio.Event()
        self._closed: ClientClosed | None = None
        self._publish_ids = 0

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
        self._started = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(run(self), name=f"asgi_ws client {self._urls.describe()}")
        try:
            await asyncio.shield(self._started)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection (code 1000 by default) and stop reconnecting; idempotent.

        With resumption, a close by the client ends the session on the server for good.
        Pending sends and requests raise :class:`ClientClosed`; iteration ends.
        """
        self._closing = True
        self._closing_event.set()
        task = self._task
        ended = ClientClosed(CloseCode.NORMAL_CLOSURE, reason or "closed by the client")
        if task is None or task.done():
            self._finish(ended)
            return
        link = self._link
        if link is not None:
            link.local_close = (code, reason or "closed by the client")
            try:
                await link.ws.close(code, reason)
            except Exception:  # the connection is gone either way
                logger.debug("asgi_ws client: close failed", exc_info=True)
            await asyncio.wait([task], timeout=1.0)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._finish(ended)

    # -- application data ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        while True:
            try:
                message = await self.recv()
            except ClientClosed as exc:
                if type(exc) is ClientClosed and exc.code == CloseCode.NORMAL_CLOSURE:
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
        waiter = self._requests.wait_for("subscribe", channel)
        link = self._link
        if link is not None and link.ready:
            link.subscribed_here.add(channel)
            await link.request("subscribe", channel, fields)
        # Otherwise the next connection subscribes it once its resumption is settled.
        return await waiter

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` and forget the subscription (not restored any more).

        Raises:
            RequestRefused: the server refused.
        """
        self._check_open()
        self._subscriptions.pop(channel, None)
        link = self._link
        if link is None or not link.ready:
            return  # the next connection will not subscribe it
        waiter = self._requests.wait_for("unsubscribe", channel)
        await link.request("unsubscribe", channel, {"channel": channel})
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
        self._publish_ids += 1
        request_id = self._publish_ids
        waiter = self._requests.wait_for("publish", request_id)
        frame = encode("publish", {"channel": channel, "data": data, "id": request_id})
        try:
            await self._send_frame(frame, publish_id=request_id)
        except BaseException:
            self._requests.forget("publish", request_id)
            raise
        await waiter

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._link is not None

    @property
    def closed(self) -> bool:
        """Whether the client stopped for good."""
        return self._closed is not None

    @property
    def current_url(self) -> str | None:
        """The URL of the current (or last) connection attempt, query string included."""
        return self._urls.last

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose for the current connection."""
        return None if self._link is None else self._link.ws.subprotocol

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
        return self._events.stream(maxlen)

    # -- sending -----------------------------------------------------------------------------

    async def _send_frame(self, frame: Data, publish_id: int | None = None) -> None:
        self._check_open()
        link = self._link
        # A socket already closing (the heartbeat gave up, a local abort) would swallow the frame.
        if link is not None and link.ready and not self._pending and not link.ws.transport.is_closing():
            if publish_id is not None:
                self._requests.sent("publish", publish_id)
            try:
                await link.ws.send(frame)
                return
            except ConnectionClosed:  # not written: wait for the next connection like any other message
                if publish_id is not None:
                    self._requests.unsent("publish", publish_id)
        if len(self._pending) >= self._settings.max_pending:
            raise SendBufferFull(f"{self._settings.max_pending} messages already wait for a reconnection")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((frame, future, publish_id))
        await future

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._closing:
            raise ClientClosed(CloseCode.NORMAL_CLOSURE, "closed by the client")
        if self._task is None:
            raise RuntimeError("the client is not started: use `async with connect(...)` or `await connect(...)`")

    # -- ending ------------------------------------------------------------------------------

    def _started_ok(self) -> None:
        """A connection opened: the first one ends the wait of ``connect()``."""
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _stop(self, exc: ClientClosed, cause: BaseException | None = None) -> None:
        if cause is not None and exc is not cause:
            exc.__cause__ = cause
        self._finish(exc)

    def _finish(self, exc: ClientClosed) -> None:
        """The client stopped for good: fail whatever waits, end the iterators. Idempotent."""
        if self._closed is not None:
            return
        self._closed = exc
        self._link = None
        if self._closing:  # close(): the application stops reading; drop what it did not read
            self._inbox.clear()
        self._inbox.end(exc)
        while self._pending:
            _, future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(exc)
        self._requests.fail_all(exc)
        if self._started is not None and not self._started.done():
            self._started.set_exception(exc)
        error = None if type(exc) is ClientClosed else exc
        self._events.emit("closed", code=exc.code, reason=exc.reason, exception=error)
        self._events.end()


def connect(url: UrlSource, **options: Unpack[ClientOptions]) -> Client:
    """Connect to an asgi_ws endpoint; use as ``async with connect(url) as client:``.

    ``await connect(url)`` works too (then ``await client.close()``). Either waits for the
    first connection: reconnection attempts apply to it as to later ones, so it raises
    :class:`ClientGaveUp` after ``backoff.max_attempts`` failures, or
    :class:`HandshakeRefused` at once for a refusal that is not retried.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint; or a list of them (the servers of
            a cluster: each attempt after a failure or a drop takes the next one, and with a
            shared session store the session resumes there); or a callable (sync or async)
            returning the URL of each attempt.
        options: the keyword options, typed by :class:`~asgi_ws.client.ClientOptions`:

            - ``subprotocols``: subprotocols to offer, in order of preference.
            - ``headers``: extra handshake headers (``Authorization``, ``Origin``...).
            - ``ticket``: a ticket (str) added as the ``ticket_param`` query parameter, or a
              callable (sync or async) returning a fresh one, called before every connection
              attempt; with a callable, 4401 closes and 401 refusals are retried with a new ticket.
            - ``ticket_param``: the query parameter the server's ``SignedTicket`` reads (``ticket``).
            - ``resume``: ask for a resumable session (``ws_resume``, default True); harmless on
              servers without ``ResumeMiddleware``. False: every reconnection is a fresh connection.
            - ``heartbeat``: ping the server after the announced heartbeat ``interval`` of silence
              and reconnect when nothing answers within its ``timeout`` (default True). Server
              pings are always answered.
            - ``batch``: ask the server for batch frames (``hello``'s ``batch``, default True):
              messages that come faster than the client takes them one by one arrive in one
              frame, which the client unpacks; the application still gets them one by one, and
              resumption counts each. False: one frame a message, always.
            - ``backoff``: reconnection policy (default ``Backoff()``: 0.5 s base, 30 s cap,
              forever, counter reset after 10 s up).
            - ``open_timeout``: seconds for one opening handshake (default 10); also how long the
              client waits for the answer to a resume request.
            - ``max_queue``: data frames received and not read yet by the application (default
              1024); when full, the client stops reading the socket (backpressure).
            - ``max_pending``: messages ``send``/``publish`` may hold while disconnected (default
              100); then :class:`SendBufferFull`. 0: sending while disconnected fails at once.
            - ``stop_codes``: extra close codes after which the client does not reconnect.
            - ``on_event``: called with every :class:`Event` (synchronously; exceptions are logged).
            - any other: passed to :func:`websockets.asyncio.client.connect` (``ssl``,
              ``max_size``, ``ping_interval``, ``proxy``...).
    """
    return Client(url, **options)


__all__ = ["Client", "Data", "TicketSource", "UrlSource", "connect"]
