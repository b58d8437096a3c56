"""``nats://`` and ``tls://``: NATS core pub/sub through nats-py, for processes on any number of hosts.

NATS core is at-most-once and keeps nothing, as Redis pub/sub: that is what the broker contract
asks for (an outage's loss window is reported, not hidden). JetStream is used for history only
(``?history=N&history_ttl=3600``: a stream per channel, :mod:`~asgi_ws.brokers.nats_history`);
a message over the server's ``max_payload`` cannot be kept (``ValueError``).

Each channel is one subject, ``<prefix>.<escaped name>`` (:func:`channel_subject`), and one
nats-py subscription. nats-py feeds each subscription's callback from a bounded pending queue in
a task of its own; the callback here calls ``deliver`` directly, with no queue or task of ours.
A payload over the server's ``max_payload`` is sent as chunks carrying an ``Asgi-Ws-Chunk``
header and joined again on receipt (:mod:`~asgi_ws.brokers.nats_chunks`). nats-py reconnects;
the broker chooses the delay (full-jitter backoff) and reports the loss window. URLs, limits
and tuning are in ``docs/brokers/nats.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import OutboundBufferLimitError, SlowConsumerError, StaleConnectionError, UnexpectedEOF

from .._repeated import RepeatedLog
from ..exceptions import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError
from .base import (
    Broker,
    BrokerEvent,
    Deliver,
    OnEvent,
    backoff_delays,
    check_channel,
    describe_error,
    emit_event,
    escape_name,
    redact_url,
)
from .history import position
from .nats_chunks import CHUNK_HEADER, Reassembler, split
from .nats_history import StreamHistory, epoch_of

if TYPE_CHECKING:
    from nats.aio.client import Server

logger = logging.getLogger("asgi_ws.brokers.nats")
#: Lines the network can repeat for every message: at once, then at most one a minute (slow
#: consumer: one per 10 s) with how many they stand for.
_repeated = RepeatedLog(logger, 60.0)
_slow_consumer = RepeatedLog(logger, 10.0)

_PREFIX = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_DEFAULTS = {  # URL query options: see docs/brokers/nats.md
    "pending_msgs": 65_536,
    "pending_bytes": 64 * 1024 * 1024,
    "outbound_buffer": 2 * 1024 * 1024,
    "max_message": 16 * 1024 * 1024,
    "history": 0,
}
_HISTORY_OPTIONS = {"history_ttl", "history_storage"}
_OWN_OPTIONS = {"servers", "allow_reconnect", "max_reconnect_attempts", "reconnect_time_wait", "pending_size"}
_OWN_OPTIONS |= {"error_cb", "disconnected_cb", "reconnected_cb", "closed_cb", "reconnect_to_server_handler"}
# Newer nats-py (2.16 has it) lets a handler choose the delay before each reconnection attempt (backoff with jitter).
_HAS_RECONNECT_HANDLER = "reconnect_to_server_handler" in inspect.signature(Client.connect).parameters


def channel_subject(prefix: str, channel: str) -> str:
    """The NATS subject of ``channel``: ``prefix``, a dot, then the name as one token.

    The token is :func:`~asgi_ws.brokers.base.escape_name`'s: the name's UTF-8 bytes kept when
    in ``A-Z a-z 0-9 -`` and written ``_XX`` (hex) otherwise, ``_`` included, so it is a valid
    subject token (no dot, space or wildcard) and distinct names never share a subject.
    ``room-1`` → ``asgi_ws.room-1``; ``a.b`` → ``asgi_ws.a_2Eb``.
    """
    return f"{prefix}.{escape_name(channel)}"


class NatsBroker(Broker):
    """NATS core pub/sub: ``nats://[user:password@]host[:port][,host[:port]...][?prefix=...]``, or ``tls://``.

    Args:
        url: the servers, the credentials (``user:password@`` or ``token@``, percent-encoded) and
            the options ``prefix``, ``pending_msgs``, ``pending_bytes``, ``outbound_buffer`` and
            ``max_message`` (docs/brokers/nats.md).
        **nats_options: more keyword arguments for ``nats.connect``: ``tls=`` (an SSLContext),
            ``user_credentials=``, ``ping_interval=``... Reconnection, callbacks and buffers are
            the broker's own.

    Raises:
        ConfigurationError: the URL or an option is invalid.
    """

    schemes = ("nats", "tls")

    def __init__(self, url: str, **nats_options: Any) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if parts.scheme.lower() not in self.schemes or not all(hosts.split(",")):
            raise ConfigurationError(f"a NATS URL is nats://host[:port][,host...] or tls://..., not {self.safe_url!r}")
        self.servers = [f"{parts.scheme.lower()}://{host}" for host in hosts.split(",")]
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(options.keys() - _DEFAULTS.keys() - _HISTORY_OPTIONS - {"prefix"})
        if unknown:
            raise ConfigurationError(f"unknown NATS broker URL option(s) {unknown}: see docs/brokers/nats.md")
        reserved = sorted(nats_options.keys() & _OWN_OPTIONS)
        if reserved:
            raise ConfigurationError(f"the NATS broker sets {reserved} itself: see docs/brokers/nats.md")
        self.prefix = options.pop("prefix", "asgi_ws")
        if not _PREFIX.fullmatch(self.prefix) or len(self.prefix) > 128:
            raise ConfigurationError(f"prefix={self.prefix!r}: use dot-separated tokens of A-Z a-z 0-9 _ -")
        limits = {name: options.get(name, str(default)) for name, default in _DEFAULTS.items()}
        if not all(value.isdigit() and (int(value) > 0 or name == "history") for name, value in limits.items()):
            raise ConfigurationError(f"{', '.join(_DEFAULTS)} are positive integers (bytes or messages)")
        self.pending_msgs, self.pending_bytes, self.outbound_buffer, self.max_message, self.history_size = map(
            int, limits.values()
        )
        try:
            self.history_ttl = float(options.get("history_ttl", "3600"))
            if not self.history_ttl > 0:
                raise ValueError
        except ValueError:
            raise ConfigurationError("history_ttl is a number of seconds > 0") from None
        self.history_storage = options.get("history_storage", "file")
        if self.history_storage not in ("file", "memory"):
            raise ConfigurationError("history_storage is file or memory")
        self._history = StreamHistory(
            self.prefix, size=self.history_size, ttl=self.history_ttl, storage=self.history_storage
        )
        self._options: dict[str, Any] = {"name": f"asgi_ws pid {os.getpid()}", "connect_timeout": 2}
        self._options |= {"ping_interval": 10, "max_outstanding_pings": 2, **nats_options}
        if userinfo:
            user, has_password, password = userinfo.partition(":")
            auth = {"user": unquote(user), "password": unquote(password)} if has_password else {"token": unquote(user)}
            self._options |= auth
        self._secret = self._options.get("password") or self._options.get("token")
        self._nc: Client | None = None
        self._deliver: Deliver | None = None
        self._on_event: OnEvent | None = None
        self._subs: dict[str, Subscription | None] = {}  # None: being subscribed
        self._closed = False
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._attempts = 0
        self._backoff = backoff_delays(cap=5.0)
        self._ids = (f"{uuid.uuid4().hex}-{n}" for n in itertools.count())
        self._reassembler = Reassembler(4 * self.max_message)
        self.slow_consumer_drops = 0  # messages nats-py dropped: a subscription's pending queue was full

    @property
    def safe_url(self) -> str:
        """The URL without its password, or its token (``nats://token@host``)."""
        parts = urlsplit(self.url)
        if "@" in parts.netloc and parts.password is None:
            return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
        return redact_url(self.url)

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._secret)

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        """Connect to the first server that answers, or raise BrokerUnavailable within seconds.

        Start-up tries each server twice, a second apart; once connected, reconnection never
        gives up (exponential backoff with full jitter, capped at 5 s).
        """
        if self._closed:
            raise BrokerClosed("this broker was closed")
        if self._nc is not None:
            raise BrokerError(f"this broker is already connected to {self.safe_url}")
        self._deliver, self._on_event = deliver, on_event
        own: dict[str, Any] = {"allow_reconnect": True, "max_reconnect_attempts": 1, "reconnect_time_wait": 1}
        own |= {"pending_size": self.outbound_buffer, "error_cb": self._on_error, "closed_cb": self._on_closed}
        own |= {"disconnected_cb": self._on_disconnected, "reconnected_cb": self._on_reconnected}
        if _HAS_RECONNECT_HANDLER:
            own["reconnect_to_server_handler"] = self._next_server
        try:
            nc = await nats.connect(self.servers, **self._options, **own)
        except (OSError, asyncio.TimeoutError, NatsError) as exc:
            reason = self._last_error or self._describe(exc)
            raise BrokerUnavailable(f"cannot connect to NATS at {self.safe_url}: {reason}") from exc
        # Fail fast at start-up (above), never give up afterwards: nats-py reads its options live.
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 2  # used only by a nats-py without that handler
        self._nc, self._last_error = nc, None

    async def close(self) -> None:
        """Close the connection, flushing what is buffered if connected; idempotent."""
        self._closed = True
        nc, self._nc = self._nc, None
        subs = [sub for sub in self._subs.values() if sub is not None]
        self._subs.clear()
        if nc is None or nc.is_closed:
            return
        try:
            if not nc.is_connected:  # nats-py's close() fails midway in an outage: stop the subscriptions first
                for sub in subs:
                    await sub.unsubscribe()
            await nc.close()
        except (OSError, NatsError) as exc:  # it flushes its outbound buffer to the dead socket
            logger.debug("NATS connection to %s closed with an error: %s", self.safe_url, self._describe(exc))

    def _check(self) -> Client:
        if self._closed or self._nc is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")
        return self._nc

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Publish ``payload``; above the server's ``max_payload`` it is sent in chunks, in order.
        With history, keep it in the channel's stream and return its position.

        During an outage the message waits in nats-py's outbound buffer and is sent on reconnection.

        Raises:
            BrokerClosed: the broker is closed.
            ValueError: the channel name is invalid, or the payload exceeds ``max_message``.
            BrokerError: NATS is unreachable and the outbound buffer is full, or nats-py closed
                the connection for good.
        """
        nc = self._check()
        check_channel(channel)
        subject = channel_subject(self.prefix, channel)
        if self.history_size:
            return await self._publish_kept(nc, channel, subject, payload)
        try:
            if len(payload) <= nc.max_payload:
                await nc.publish(subject, payload)
                return None
            if len(payload) > self.max_message:
                raise ValueError(f"{len(payload)} bytes is over max_message={self.max_message} bytes")
            for chunk, headers in split(payload, nc.max_payload, next(self._ids)):
                await nc.publish(subject, chunk, headers=headers)
        except OutboundBufferLimitError as exc:
            raise BrokerError(
                f"NATS at {self.safe_url} is unreachable and outbound_buffer={self.outbound_buffer} bytes is full"
            ) from exc
        except NatsError as exc:
            raise BrokerError(f"cannot publish to NATS at {self.safe_url}: {self._describe(exc)}") from exc
        return None

    # -- history (JetStream: nats_history.py) ------------------------------------------------------

    async def _publish_kept(self, nc: Client, channel: str, subject: str, payload: bytes) -> str:
        if len(payload) > nc.max_payload:
            raise ValueError(
                f"{len(payload)} bytes is over the NATS server's max_payload: a kept message is one message"
            )
        try:
            return await self._history.publish(nc.jetstream(), channel, subject, payload)
        except (NatsError, asyncio.TimeoutError) as exc:
            raise BrokerError(f"cannot publish to NATS at {self.safe_url}: {self._describe(exc)}") from exc

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """What ``channel``'s stream kept after ``after`` (:func:`asgi_ws.brokers.history.after_history`).

        Raises:
            BrokerError: no history configured, or NATS unreachable.
        """
        if not self.history_size:
            return await super().history(channel, after)
        nc = self._check()
        try:
            return await self._history.after(nc.jetstream(), channel, channel_subject(self.prefix, channel), after)
        except (NatsError, asyncio.TimeoutError) as exc:
            raise BrokerError(f"cannot read history from NATS at {self.safe_url}: {self._describe(exc)}") from exc

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        nc = self._check()
        try:
            return await self._history.last_position(nc.jetstream(), channel, channel_subject(self.prefix, channel))
        except (NatsError, asyncio.TimeoutError) as exc:
            raise BrokerError(f"cannot read history from NATS at {self.safe_url}: {self._describe(exc)}") from exc

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel``; idempotent."""
        nc = self._check()
        check_channel(channel)
        if channel in self._subs:
            return
        self._subs[channel] = None  # nats-py queues the SUB before its first await: later PUBs follow it
        subject, on_message = channel_subject(self.prefix, channel), self._handler(channel)
        if self.history_size:
            subject = self._history.republished(channel)
        # nats-py drops a message that takes a subscription's pending bytes to the limit: keep it above max_payload.
        max_bytes = max(self.pending_bytes, 2 * nc.max_payload)
        try:
            sub = await nc.subscribe(
                subject, cb=on_message, pending_msgs_limit=self.pending_msgs, pending_bytes_limit=max_bytes
            )
        except NatsError as exc:
            self._subs.pop(channel, None)
            raise BrokerError(f"cannot subscribe on NATS at {self.safe_url}: {self._describe(exc)}") from exc
        if channel in self._subs and self._subs[channel] is None:
            self._subs[channel] = sub
        elif not self._closed:  # unsubscribed meanwhile
            await sub.unsubscribe()

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from ``channel``; idempotent. Messages still pending for it are discarded."""
        self._check()
        sub = self._subs.pop(channel, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except NatsError as exc:
                raise BrokerError(f"cannot unsubscribe on NATS at {self.safe_url}: {self._describe(exc)}") from exc

    async def subscription_count(self) -> int:
        """The live subscriptions of this broker's connection, counted client-side.

        The server's monitoring endpoint (``/connz?subs=1``) is often disabled or firewalled.
        """
        return len(self._subs)

    def _handler(self, channel: str) -> Callable[[Msg], Awaitable[None]]:
        deliver = self._deliver
        assert deliver is not None, "subscribe() is only possible after connect()"
        reassembler = self._reassembler
        history = bool(self.history_size)

        async def on_message(msg: Msg) -> None:
            payload: bytes | None = msg.data
            if history:  # republished from the channel's stream
                headers = msg.headers or {}
                try:
                    at = position(epoch_of(headers["Nats-Stream"]), int(headers["Nats-Sequence"]))
                except (KeyError, ValueError):
                    _repeated.warning(
                        "NATS message on %r without its stream position: dropped", channel, key="position"
                    )
                    return
                try:
                    deliver(channel, msg.data, at)
                except Exception:
                    logger.exception("deliver() failed for a NATS message on channel %r", channel)
                return
            if msg.headers and CHUNK_HEADER in msg.headers:
                try:
                    payload = reassembler.add(msg.headers[CHUNK_HEADER], msg.data)
                except ValueError as exc:
                    _repeated.warning("NATS message on %r dropped: %s", channel, exc, key="header")
                    return
            if payload is not None:
                try:
                    deliver(channel, payload)
                except Exception:
                    logger.exception("deliver() failed for a NATS message on channel %r", channel)

        return on_message

    def _next_server(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        attempt, self._attempts = self._attempts, self._attempts + 1
        return servers[attempt % len(servers)], self._backoff(min(attempt, 30))

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.slow_consumer_drops += 1
            _slow_consumer.warning(  # at once, then at most one line per 10 s
                "NATS slow consumer: %d message(s) dropped so far (latest on %s): deliver() fell behind "
                "by pending_msgs=%d or pending_bytes=%d",
                *(self.slow_consumer_drops, exc.subject, self.pending_msgs, self.pending_bytes),
            )
            return
        self._last_error = self._describe(exc)
        connection_error = isinstance(exc, (OSError, asyncio.TimeoutError, UnexpectedEOF, StaleConnectionError))
        up = self._nc is not None and self._down_since is None
        logger.log(logging.DEBUG if connection_error or not up else logging.WARNING, "NATS: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        if self._closed or self._nc is None or self._down_since is not None:
            return  # our own close, the start-up attempts, or the same outage
        self._down_since = time.monotonic()
        error = self._last_error or "connection lost"
        logger.warning("NATS connection to %s lost (%s); reconnecting", self.safe_url, error)
        emit_event(self._on_event, BrokerEvent("disconnected", url=self.safe_url, error=error))

    async def _on_reconnected(self) -> None:
        lost = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since, self._attempts, self._last_error = None, 0, None
        logger.warning(
            "NATS connection to %s restored after %.1f s: messages of that time may be lost", self.safe_url, lost
        )
        emit_event(self._on_event, BrokerEvent("reconnected", url=self.safe_url, lost_seconds=lost))

    async def _on_closed(self) -> None:
        if not self._closed and self._nc is not None:  # nats-py gave up (a fatal -ERR from the server)
            logger.error("NATS closed the connection to %s for good (%s)", self.safe_url, self._last_error)
            await self._on_disconnected()


__all__ = ["CHUNK_HEADER", "NatsBroker", "Reassembler", "channel_subject"]
