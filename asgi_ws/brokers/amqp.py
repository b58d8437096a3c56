"""``amqp://``, ``amqps://``: RabbitMQ (AMQP 0-9-1) through aio-pika.

How it is built, and why (the user's view, with the measurements, is in ``docs/brokers/amqp.md``):

- **One topic exchange per app** (``exchange``, default ``asgi_ws``): durable and never
  auto-deleted, because publishing to an exchange that does not exist is a channel error.
- **One queue per broker instance**, server-named, exclusive and auto-delete: RabbitMQ deletes
  it with its connection, so a process that dies leaves nothing behind. Each subscribed channel
  is one binding of that queue, its routing key :func:`routing_key` (one topic word, at most
  255 bytes, never a wildcard). The queue is bounded (``queue_max_length``,
  ``queue_max_bytes``, oldest dropped first); it only fills while the process stops reading.
- **Delivery**: a ``no_ack`` consumer (at-most-once, as the other pub/sub brokers): aiormq
  runs each delivery in a task of its own, in order, and our callback calls ``deliver`` there;
  no queue or task of ours.
- **Publishing** on a second channel of the same connection, with publisher confirms unless
  ``confirm=0``: a publish that returns was routed by RabbitMQ.
- **Reconnection is ours**, not ``connect_robust``'s: that one retries at a fixed interval
  (every process in step after a server restart) and restores a server-named exclusive queue
  under its old name. Here the connection, a consumer cancelled by the server, or either
  channel closing by error all mean "lost": the broker reports it, reconnects with full-jitter
  backoff (:func:`~asgi_ws.brokers.base.backoff_delays`), declares a new queue, binds every
  wanted channel, and reports the loss window. Messages published meanwhile are lost: the
  old queue went with the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractQueue
from aiormq import spec
from aiormq.abc import AbstractChannel as UnderlayChannel
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPError

from ..exceptions import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError
from .base import (
    Broker,
    BrokerEvent,
    Deliver,
    OnEvent,
    backoff_delays,
    cancel_and_wait,
    check_channel,
    describe_error,
    emit_event,
    escape_name,
    retry,
    scrub,
)

logger = logging.getLogger("asgi_ws.brokers.amqp")

#: The longest routing key AMQP 0-9-1 carries (a short string: 255 bytes).
MAX_ROUTING_KEY = 255
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_DEFAULTS = {  # URL query options of the broker's own: see docs/brokers/amqp.md
    "max_message": 16 * 1024 * 1024,
    "queue_max_length": 65_536,
    "queue_max_bytes": 64 * 1024 * 1024,
}
# What a lost or refused connection raises (aio-pika's own list, less what would hide a bug).
_FAILURES: tuple[type[BaseException], ...] = (AMQPError, OSError, asyncio.TimeoutError, RuntimeError)


def routing_key(channel: str) -> str:
    """The routing key of ``channel``: one topic word of at most 255 bytes.

    The name escaped by :func:`~asgi_ws.brokers.base.escape_name` (its UTF-8 bytes kept when in
    ``A-Z a-z 0-9 -``, written ``_XX`` otherwise, ``_``, ``.``, ``*`` and ``#`` included), so the
    key is one word of a topic exchange and never a wildcard, and distinct names get distinct
    keys. A name whose escaped form would pass 255 bytes becomes ``~`` and the SHA-256 of its
    UTF-8 bytes in hex (``~`` is never an escape's). ``room-1`` → ``room-1``; ``a.b`` → ``a_2Eb``.
    """
    key = escape_name(channel)
    if len(key) <= MAX_ROUTING_KEY:
        return key
    return "~" + hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()


class _Link:
    """One connection to RabbitMQ with what hangs on it; ``lost`` says why it is no more."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.bound: set[str] = set()  # routing keys RabbitMQ confirmed binding on this link's queue
        self.queue: AbstractQueue | None = None
        self.publisher: UnderlayChannel | None = None

    def fail(self, why: str) -> None:
        if not self.lost.done():
            self.lost.set_result(why)

    def on_close(self, sender: object, exc: BaseException | None = None) -> None:
        self.fail(f"{type(exc).__name__}: {exc}" if exc is not None else f"{type(sender).__name__} closed")

    def on_cancel(self, frame: object) -> None:
        self.fail("RabbitMQ cancelled the consumer (was its queue deleted?)")

    async def close(self) -> None:
        self.fail("closed")
        with contextlib.suppress(*_FAILURES):
            await self.connection.close()


class AmqpBroker(Broker):
    """RabbitMQ: ``amqp://[user:password@]host[:port][/vhost][?exchange=...&confirm=1]``, or ``amqps://``.

    Options of the URL's query besides aio-pika's own (``heartbeat``, ``name``, ``cafile``...):

    - ``exchange``: the topic exchange of the library's messages (default ``asgi_ws``).
    - ``confirm``: ``1`` (default) publishes with publisher confirms, ``0`` without.
    - ``timeout``: seconds allowed to connect, and to each publish, bind and declaration (default 5).
    - ``max_message``: the largest payload ``publish`` takes, in bytes (default 16 MiB).
    - ``queue_max_length``, ``queue_max_bytes``: the bounds of a process's queue (default 65,536
      messages, 64 MiB); over them RabbitMQ drops the oldest.

    ``heartbeat`` defaults to 10 seconds and ``name`` (the connection's name in RabbitMQ) to
    ``asgi_ws pid <pid>``.

    Raises:
        ConfigurationError: the URL or an option is invalid.
    """

    schemes = ("amqp", "amqps")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own_names = {"exchange", "confirm", "timeout", *_DEFAULTS}
        if any(key == "history" for key, _ in query):
            raise ConfigurationError(
                f"the AMQP broker keeps no history ({self.safe_url}): room history for session resumption "
                "is kept by memory://, redis://, postgres:// and nats:// with ?history=N"
            )
        own = {key: value for key, value in query if key in own_names}
        rest = [(key, value) for key, value in query if key not in own_names]
        self.exchange = own.get("exchange", "asgi_ws")
        confirm = _BOOLEANS.get(own.get("confirm", "1").lower())
        try:
            if not self.exchange or len(self.exchange.encode()) > MAX_ROUTING_KEY or self.exchange.startswith("amq."):
                raise ValueError("exchange is a name of 1 to 255 bytes, not starting with 'amq.' (reserved)")
            if confirm is None:
                raise ValueError("confirm is 1/0 or true/false")
            self.timeout = float(own.get("timeout", "5"))
            if not self.timeout > 0:
                raise ValueError("timeout is a number of seconds > 0")
            limits = {name: own.get(name, str(default)) for name, default in _DEFAULTS.items()}
            if not all(value.isdigit() and int(value) > 0 for value in limits.values()):
                raise ValueError(f"{', '.join(_DEFAULTS)} are positive integers (bytes or messages)")
            self.max_message, self.queue_max_length, self.queue_max_bytes = map(int, limits.values())
            if self.queue_max_bytes < self.max_message:
                raise ValueError("queue_max_bytes must hold one message of max_message bytes")
        except ValueError as exc:
            raise ConfigurationError(f"invalid AMQP broker URL {self.safe_url}: {exc}") from None
        self.confirm = confirm
        names = {key for key, _ in rest}
        rest += [("heartbeat", "10")] if "heartbeat" not in names else []
        rest += [("name", f"asgi_ws pid {os.getpid()}")] if "name" not in names else []
        self._amqp_url = urlunsplit(parts._replace(query=urlencode(rest)))
        self._password = parts.password
        self._names: dict[str, str] = {}  # routing key -> channel, for every channel we want
        self._lock = asyncio.Lock()  # one change of bindings at a time: wanted set and server agree
        self._link: _Link | None = None  # None: connecting, or reconnecting
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self._on_event: OnEvent | None = None
        self._closed = False
        self._delay = backoff_delays()

    # -- public API --------------------------------------------------------------------------

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        """Connect within ``timeout`` seconds, declare the exchange and this process's queue, or
        raise :class:`~asgi_ws.exceptions.BrokerUnavailable` naming the URL (never its password)."""
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver, self._on_event = deliver, on_event
        if self._task is not None:
            return
        try:
            link = await self._open()
        except _FAILURES as exc:
            raise BrokerUnavailable(f"cannot connect to RabbitMQ at {self.safe_url}: {self._describe(exc)}") from None
        self._task = asyncio.create_task(self._run(link), name=f"asgi_ws amqp {self.safe_url}")

    async def close(self) -> None:
        """Close the connection (RabbitMQ deletes the queue with it); idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        link, self._link = self._link, None
        self._names.clear()
        if link is not None:
            await link.close()

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish once, without waiting for a reconnection or buffering.

        Raises:
            ValueError: the channel name is invalid, or the payload is over ``max_message``.
            BrokerError: not connected (reconnecting), or RabbitMQ did not take the message
                within ``timeout`` (refused it, with confirms).
        """
        self._check()
        check_channel(channel)
        if len(payload) > self.max_message:
            raise ValueError(f"{len(payload)} bytes is over max_message={self.max_message} bytes")
        link = self._link
        if link is None or link.publisher is None or link.lost.done():
            raise BrokerError(f"not connected to RabbitMQ at {self.safe_url}: reconnecting")
        try:
            confirmation = await link.publisher.basic_publish(
                payload, exchange=self.exchange, routing_key=routing_key(channel), timeout=self.timeout
            )
        except _FAILURES as exc:
            raise BrokerError(f"could not publish to RabbitMQ at {self.safe_url}: {self._describe(exc)}") from None
        if self.confirm and not isinstance(confirmation, spec.Basic.Ack):
            raise BrokerError(f"RabbitMQ at {self.safe_url} did not confirm a publish: {confirmation!r}")

    async def subscribe(self, channel: str) -> None:
        """Subscribe; returns once RabbitMQ has confirmed the binding (at once during an
        outage: the binding is then made on reconnection).

        Raises:
            BrokerError: RabbitMQ refused the binding.
        """
        self._check()
        check_channel(channel)
        key = routing_key(channel)
        link = self._link
        if link is not None and key in link.bound and key in self._names:
            return  # bound and confirmed
        self._names[key] = channel
        try:
            await self._apply(key)
        except BrokerError:
            self._names.pop(key, None)
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe; nothing more is delivered on ``channel`` once called."""
        self._check()
        check_channel(channel)
        key = routing_key(channel)
        if self._names.pop(key, None) is not None:
            await self._apply(key)

    async def subscription_count(self) -> int:
        """The bindings RabbitMQ confirmed on this broker's queue.

        Raises:
            BrokerError: during an outage.
        """
        self._check()
        link = self._link
        if link is None:
            raise BrokerError(f"not connected to RabbitMQ at {self.safe_url}: reconnecting")
        return len(link.bound)

    # -- bindings ------------------------------------------------------------------------------

    async def _apply(self, key: str) -> None:
        """Bind or unbind ``key`` on the current queue so that it matches ``self._names``; during
        an outage there is nothing to do (the reconnection binds the wanted set)."""
        async with self._lock:
            link = self._link
            if link is None or link.queue is None or link.lost.done():
                return
            wanted = key in self._names
            if wanted == (key in link.bound):
                return
            try:
                if wanted:
                    await link.queue.bind(self.exchange, key, timeout=self.timeout)
                    link.bound.add(key)
                else:
                    await link.queue.unbind(self.exchange, key, timeout=self.timeout)
                    link.bound.discard(key)
            except _FAILURES as exc:
                if link.lost.done() or link.connection.is_closed:
                    return  # the reconnection makes the bindings match
                link.fail(f"a binding failed: {self._describe(exc)}")
                raise BrokerError(
                    f"RabbitMQ at {self.safe_url} refused to {'bind' if wanted else 'unbind'}: {self._describe(exc)}"
                ) from None

    # -- connections ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed or self._task is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._password)

    async def _open(self) -> _Link:
        """Connect, declare the exchange and a new queue, consume, and bind every wanted channel."""
        connection = await aio_pika.connect(self._amqp_url, timeout=self.timeout)
        link = _Link(connection)
        try:
            connection.close_callbacks.add(link.on_close)
            consumer = await connection.channel(publisher_confirms=False)
            publisher = await connection.channel(publisher_confirms=self.confirm)
            for amqp_channel in (consumer, publisher):
                amqp_channel.close_callbacks.add(link.on_close)
            await publisher.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True, timeout=self.timeout
            )
            arguments = {"x-max-length": self.queue_max_length, "x-max-length-bytes": self.queue_max_bytes}
            queue = await consumer.declare_queue(
                exclusive=True, auto_delete=True, arguments={**arguments, "x-overflow": "drop-head"}
            )
            underlay = await consumer.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(link.on_cancel)
            link.queue, link.publisher = queue, await publisher.get_underlay_channel()
            await underlay.basic_consume(queue.name, self._on_message, no_ack=True, timeout=self.timeout)
            async with self._lock:
                for key in list(self._names):
                    if key in self._names:  # not unsubscribed while we were binding the others
                        await queue.bind(self.exchange, key, timeout=self.timeout)
                        link.bound.add(key)
                self._link = link
        except BaseException:
            await link.close()
            raise
        return link

    async def _on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback: one task per delivery, run in the order they arrived; it
        never suspends, so deliveries stay in that order."""
        channel = self._names.get(message.routing_key or "")
        if channel is None or self._deliver is None:
            return  # unsubscribed while the message was on its way
        try:
            self._deliver(channel, message.body)
        except Exception:
            logger.exception("delivering a message of channel %r failed", channel)

    async def _run(self, link: _Link) -> None:
        """Wait for the link to be lost; report it, reconnect with backoff until closed, report that."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                error = scrub(await link.lost, self._password)
                self._link = None
                await link.close()
                lost_at = loop.time()
                logger.warning("lost the connection to RabbitMQ at %s (%s): reconnecting", self.safe_url, error)
                emit_event(self._on_event, BrokerEvent("disconnected", url=self.safe_url, error=error))
                what = f"reconnecting to RabbitMQ at {self.safe_url}"
                link = await retry(self._open, _FAILURES, delay=self._delay, describe=self._describe, what=what)
                lost = loop.time() - lost_at
                logger.warning(
                    "reconnected to RabbitMQ at %s, %d binding(s) restored, after %.2f s without it: "
                    "messages published meanwhile are lost",
                    self.safe_url,
                    len(link.bound),
                    lost,
                )
                emit_event(self._on_event, BrokerEvent("reconnected", url=self.safe_url, lost_seconds=lost))
        finally:
            if self._link is not None:
                await self._link.close()


__all__ = ["MAX_ROUTING_KEY", "AmqpBroker", "routing_key"]
