"""The connection loop of a client: open a socket, serve it until it ends, decide, wait, again.

:func:`run` is the client's one task: it opens each connection (a fresh ticket, the resume
parameters, the next URL of a list), hands it to a :class:`Link` until it ends, then asks
:mod:`.policy` whether to reconnect and waits the backoff's delay. A :class:`Link` is one open
socket: it says ``hello``, restores subscriptions and flushes waiting sends, reads frames
(control messages go to :mod:`.dispatch`, data frames to the inbox, and the messages of a batch
frame to the inbox one by one, each counted), and runs the socket's heartbeat,
acknowledgements and resume deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..close_codes import CloseCode
from ..protocol import PREFIX, VERSION, ProtocolError, decode, encode
from .dispatch import dispatch
from .exceptions import ClientClosed, ClientGaveUp, HandshakeRefused, ServerClosed
from .inbox import Data
from .policy import ACK_EVERY, ack_due, close_action, heartbeat_step, refusal_action

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
    from websockets.typing import Subprotocol
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    from ..exceptions import MissingDependencyError

    raise MissingDependencyError(
        "asgi_ws.client needs the websockets library (>= 13): pip install 'websockets>=13'"
    ) from exc

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("asgi_ws.client")

#: The reason reported when the client's own heartbeat gives up on a silent connection.
CLIENT_HEARTBEAT_TIMEOUT = "heartbeat timeout (client)"


async def run(client: Client) -> None:
    """The client's task: connect, serve, reconnect, until the client stops."""
    loop = asyncio.get_running_loop()
    settings = client._settings
    try:
        while True:
            try:
                ws = await open_socket(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stop, reason = classify(exc, can_refresh=settings.can_refresh)
                if stop is not None:
                    client._stop(stop, exc)
                    return
                if not await wait_backoff(client, loop.time(), None, reason, exc):
                    return
                continue
            client._attempts.connected(loop.time())
            link = client._link = Link(client, ws)
            code, reason = await link.serve()
            client._events.emit("disconnected", code=code, reason=reason)
            if client._resume.on_close(code):  # 4404: the next connection starts a new session
                client._events.emit("session_lost", code=code, reason=reason)
            if client._closing:
                client._stop(ClientClosed(CloseCode.NORMAL_CLOSURE, "closed by the client"))
                return
            action = close_action(code, can_refresh=settings.can_refresh, stop_codes=settings.stop_codes)
            if action == "end":
                client._stop(ClientClosed(code, reason or "closed by the server"))
                return
            if action == "stop":
                client._stop(ServerClosed(code, reason))
                return
            if not await wait_backoff(client, loop.time(), code, reason, None):
                return
    except asyncio.CancelledError:
        if client._link is not None:  # cancelled while a connection was open
            client._link.ws.transport.abort()
        client._stop(ClientClosed(CloseCode.NORMAL_CLOSURE, "closed by the client"))
        raise
    except Exception as exc:  # a bug: stop loudly rather than hang the application
        logger.exception("asgi_ws client: connection loop failed")
        client._stop(ClientClosed(None, f"internal error: {exc!r}"), exc)


async def open_socket(client: Client) -> ClientConnection:
    """Open the next connection: the next URL, a fresh ticket, the resume parameters."""
    settings = client._settings
    params: dict[str, str] = {}
    if settings.ticket is not None:
        ticket = settings.ticket() if callable(settings.ticket) else settings.ticket
        if inspect.isawaitable(ticket):
            ticket = await ticket
        params[settings.ticket_param] = str(ticket)
    url = await client._urls.next_attempt()
    params.update(client._resume.query())
    subprotocols = [Subprotocol(p) for p in settings.subprotocols] if settings.subprotocols else None
    return await ws_connect(
        with_query(url, params),
        subprotocols=subprotocols,
        additional_headers=list(settings.headers) or None,
        open_timeout=settings.open_timeout,
        **settings.websockets,
    )


def classify(exc: Exception, *, can_refresh: bool) -> tuple[ClientClosed | None, str]:
    """What a failed connection attempt means: the exception to stop with (None: retry), and why."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body = bytes(exc.response.body or b"").decode("utf-8", "replace")[:200]
        if refusal_action(status, can_refresh=can_refresh) == "stop":
            return HandshakeRefused(status, body), f"HTTP {status}: {body}"
        return None, f"HTTP {status}: {body}"
    if isinstance(exc, InvalidURI):
        return ClientClosed(None, str(exc)), str(exc)
    return None, f"{type(exc).__name__}: {exc}"


async def wait_backoff(client: Client, now: float, code: int | None, reason: str, exc: BaseException | None) -> bool:
    """Wait before the next attempt; return False when the client gave up or was closed."""
    attempts = client._attempts
    delay = attempts.next_delay(now, code)  # at once after 1001/1012 (policy.RESTART_CODES)
    if delay is None:
        client._events.emit("gave_up", code=code, reason=reason, attempt=attempts.attempt, exception=exc)
        client._stop(ClientGaveUp(attempts.attempt, code, reason), exc)
        return False
    client._urls.advance()  # a list of URLs: the next attempt takes the next one
    client._events.emit("reconnecting", code=code, reason=reason, attempt=attempts.attempt, delay=delay, exception=exc)
    logger.info("asgi_ws client: reconnecting in %.2f s (attempt %d): %s", delay, attempts.attempt, reason or code)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(client._closing_event.wait(), delay)
    if client._closing:
        client._stop(ClientClosed(CloseCode.NORMAL_CLOSURE, "closed by the client"))
        return False
    return True


class Link:
    """One open socket of a client, from its ``hello`` to its close."""

    def __init__(self, client: Client, ws: ClientConnection) -> None:
        self.client = client
        self.ws = ws
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.opened_at = now
        #: Set when the client ends the connection itself (close(), its heartbeat): what to report.
        self.local_close: tuple[int, str] | None = None
        #: Open, resume answered, subscriptions restored, waiting sends flushed.
        self.ready = False
        #: Channels subscribed (or restored) on this socket.
        self.subscribed_here: set[str] = set()
        # The heartbeat: the server's announced (interval, timeout), and the client's own ping.
        self.hb: tuple[float, float] | None = None
        self.last_received = now
        self.last_ack_at = now
        self.ping_sent_at: float | None = None
        self.ping_id = 0

    def now(self) -> float:
        return self._loop.time()

    async def serve(self) -> tuple[int, str]:
        """Run the connection until it ends; return the close code and reason."""
        client, ws = self.client, self.ws
        client._requests.connection_started()
        client._started_ok()
        client._events.emit("connected")
        ticker = asyncio.create_task(self._tick_until_closed())
        try:
            await self.control("hello", {"v": VERSION, "batch": True} if client._settings.batch else {"v": VERSION})
            if not client._resume.pending:
                await self.restore(restored=())
            async for frame in ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            ticker.cancel()
            client._link = None
            self.ready = False
            client._requests.connection_ended()
        if self.local_close is not None:
            return self.local_close
        code = ws.close_code if ws.close_code is not None else CloseCode.ABNORMAL_CLOSURE
        return code, ws.close_reason or ""

    async def restore(self, restored: Collection[str]) -> None:
        """Subscribe again (except ``restored`` channels), flush waiting sends, then become ready.

        Subscriptions and sends made meanwhile are taken too: the link becomes ready only when
        nothing is left, with no ``await`` between that check and ``ready``.
        """
        client = self.client
        pending = client._pending
        while True:
            todo = [(c, f) for c, f in client._subscriptions.items() if c not in self.subscribed_here]
            for channel, fields in todo:
                self.subscribed_here.add(channel)
                if channel in restored:  # the server restored it with the session
                    client._requests.resolve("subscribe", channel, {"$ws": "subscribed", "channel": channel})
                else:
                    await self.request("subscribe", channel, fields)
            if not todo and not pending:
                break
            while pending:
                message, future, publish_id = pending[0]
                if not future.done():
                    if publish_id is not None:
                        client._requests.sent("publish", publish_id)
                    try:
                        await self.ws.send(message)
                    except ConnectionClosed:
                        if publish_id is not None:
                            client._requests.unsent("publish", publish_id)
                        raise  # it stays queued for the next connection
                    if not future.done():
                        future.set_result(None)
                pending.popleft()
        self.ready = True

    async def control(self, op: str, fields: Mapping[str, Any] | None = None) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader sees the end of the connection
            await self.ws.send(encode(op, fields))

    async def request(self, op: str, key: object, fields: Mapping[str, Any]) -> None:
        self.client._requests.inflight[op].append(key)
        await self.control(op, fields)

    async def ack(self) -> None:
        resume = self.client._resume
        resume.acked = resume.received
        self.last_ack_at = self.now()
        await self.control("ack", {"seq": resume.received})

    async def _on_frame(self, frame: Data) -> None:
        self.last_received = self.now()
        if isinstance(frame, str) and frame.startswith(PREFIX):
            try:
                message = decode(frame, max_length=None)  # the server's frames: bounded by max_size
            except ProtocolError as exc:
                logger.warning("asgi_ws client: ignored a malformed control message: %s", exc)
                return
            await dispatch(self, message)
            return
        await self.data(frame)

    async def data(self, frame: Data) -> None:
        """A data frame (or a message of a batch frame) for the application: counted, acknowledged
        every :data:`~.policy.ACK_EVERY`, handed to the inbox."""
        resume = self.client._resume
        seq = resume.count()
        if resume.active and seq % ACK_EVERY == 0:
            await self.ack()
        await self.client._inbox.put(frame)

    async def _tick_until_closed(self) -> None:
        """Run :meth:`_tick` until the connection closes: a step whose send raised (a failed
        ping) is logged and the heartbeat stays armed, so its timeout still finds a dead socket."""
        while True:
            try:
                await self._tick()
                return  # the heartbeat aborted the connection
            except ConnectionClosed:
                return  # the reader sees the end of the connection
            except Exception as exc:
                logger.warning("asgi_ws client: a heartbeat step failed, the heartbeat goes on: %r", exc)

    async def _tick(self) -> None:
        """The client's heartbeat, acks, and the deadline of a resume answer."""
        client = self.client
        while True:
            hb = self.hb
            await asyncio.sleep(min(0.25, hb[0] / 4) if hb else 0.25)
            now = self.now()
            if hb is not None:
                action = heartbeat_step(
                    now, last_received=self.last_received, ping_sent_at=self.ping_sent_at,
                    interval=hb[0], timeout=hb[1],
                )  # fmt: skip
                if action == "ping":
                    self.ping_id += 1
                    self.ping_sent_at = now
                    await self.control("ping", {"id": self.ping_id})
                elif action == "dead":
                    logger.info("asgi_ws client: no answer to ping within %s s; reconnecting", hb[1])
                    self.local_close = (CloseCode.HEARTBEAT_TIMEOUT, CLIENT_HEARTBEAT_TIMEOUT)
                    self.ws.transport.abort()
                    return
            resume = client._resume
            if resume.active and ack_due(resume.received, resume.acked, now, self.last_ack_at):
                await self.ack()
            if resume.pending and now - self.opened_at >= client._settings.open_timeout:
                resume.on_resume_failed()  # a server without resumption now
                client._events.emit("resume_failed", code="unsupported", reason="no answer to the resume request")
                await self.restore(restored=())


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` set in its query string (replacing parameters of the same name)."""
    if not params:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact(url: str) -> str:
    """``url`` without its query string (which may carry a ticket or a resume token)."""
    return urlunsplit(urlsplit(url)._replace(query=""))


__all__ = [
    "CLIENT_HEARTBEAT_TIMEOUT",
    "ConnectionClosed",
    "Link",
    "classify",
    "open_socket",
    "redact",
    "run",
    "wait_backoff",
    "with_query",
]
