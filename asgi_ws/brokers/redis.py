"""``redis://``, ``rediss://``: Redis pub/sub on redis-py's asyncio client (``?sharded=1``: SSUBSCRIBE/SPUBLISH).

How it is built, and why (the user's view is in ``docs/brokers/redis.md``):

- One subscriber connection per broker, read by one task that calls ``deliver`` itself: no
  queue and no task per message. It is a bare redis-py ``Connection`` speaking RESP2, not a
  ``PubSub``: a PubSub reconnects and resubscribes behind our back (we must see and report the
  loss), builds a dict per message, and under RESP3 (redis-py 8's default) passes every message
  through a push handler that formats it for a debug log.
- That connection reads without a timeout (redis-py 8's default 5 s socket timeout is what made
  channels_redis stop delivering after an idle spell); silence is checked instead by a PING after
  ``health_check_interval`` quiet seconds, answered within as many seconds or the link is dead.
- Every (un)subscribe is one command with one reply, and Redis replies in order, so a FIFO of
  futures tells each caller when the server has applied its command: concurrent first subscribes
  all take effect before they return. ``subscription_count`` asks the server the same way: the
  reply to UNSUBSCRIBE of a name never used carries this connection's own subscription count.
- Publishes and history reads use a separate client on a bounded, blocking connection pool
  (:data:`POOL_SIZE` connections, a caller waits up to :data:`POOL_TIMEOUT` seconds for a free
  one), sized for a reconnect storm: resumes read a room's history once per room at a time
  (:mod:`asgi_ws.rooms.replay`), publishes go on meanwhile.
- Channel ``name`` is the Redis channel ``prefix + name`` (UTF-8), prefix ``asgi_ws:`` by
  default. In sharded mode the prefix is a hash tag, ``{asgi_ws:}name``: every channel then lives
  in one cluster slot, so one connection to the node serving it (found by following ``MOVED``)
  carries them all.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisError, ResponseError

from ..exceptions import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError
from .base import (
    START,
    Broker,
    BrokerEvent,
    Deliver,
    OnEvent,
    backoff_delays,
    cancel_and_wait,
    check_channel,
    emit_event,
)
from .history import after_history

logger = logging.getLogger(__name__)

_OWN_OPTIONS = ("prefix", "sharded", "health_check_interval", "history", "history_ttl")
#: Connections of the publishing pool (``max_connections`` in the URL overrides it): what four
#: workers' publishes and history reads need in a reconnect storm of 50,000 resumable
#: clients, with room to spare (docs/brokers/redis.md, "Connection pool").
POOL_SIZE = 64
#: Seconds a publish or a history read waits for a free pooled connection before failing
#: (``timeout`` in the URL): long enough to queue through a storm rather than refuse resumes.
POOL_TIMEOUT = 30.0

# history=N: the message is added to a stream (the channel's own name, as a key) and published
# with its stream id in front, in one script: every subscriber sees the ids in stream order.
# The ids are the positions of asgi_ws.brokers.history, "<epoch>-<n>": a new stream takes the
# server's time in milliseconds as its epoch and numbers from 1; later entries continue with
# "<epoch>-*" (Redis 7: the next sequence number of that millisecond), so n is consecutive.
_PUBLISH_KEPT = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id
if #newest == 0 then
  local now = redis.call('TIME')
  id = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)) .. '-1'
else
  id = string.match(newest[1][1], '^(%d+)-') .. '-*'
end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id, 'p', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call(ARGV[4], KEYS[1], id .. ' ' .. ARGV[1])
return id
"""
# The oldest entry kept, and the entries after ARGV[1] (exclusive), read together; the entries
# packed in one string ("<id> <length>\n<payload>" each): one reply element instead of five an
# entry spares redis-py's parser (pure Python without hiredis) most of a long replay's time.
_HISTORY = """
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #oldest == 0 then return {} end
local parts, n = {}, 0
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')) do
  local payload = entry[2][2]  -- the one field, 'p'
  parts[n + 1], parts[n + 2], parts[n + 3] = entry[1], ' ' .. #payload .. '\\n', payload
  n = n + 3
end
return {oldest[1][1], table.concat(parts)}
"""
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class RedisBroker(Broker):
    """Redis pub/sub: ``redis://[[user]:password@]host[:port][/db][?prefix=...&sharded=1]``.

    Options of the URL's query besides redis-py's own (``socket_timeout``, ``max_connections``...):

    - ``prefix``: namespace of the library's channels (default ``asgi_ws:``).
    - ``sharded``: ``1``/``true`` for sharded pub/sub (Redis 7+, and Redis Cluster).
    - ``health_check_interval``: seconds of silence on the subscriber link before a PING, and
      to answer it (default 30; ``0``: never).
    - ``max_connections`` / ``timeout`` (redis-py's): the publishing pool's size and the wait
      for a free connection (defaults :data:`POOL_SIZE`, :data:`POOL_TIMEOUT`).
    """

    schemes = ("redis", "rediss")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {key: value for key, value in query if key in _OWN_OPTIONS}
        sharded = _BOOLEANS.get(own.get("sharded", "0").lower())
        try:
            self.ping_interval = float(own.get("health_check_interval", "30"))
            if sharded is None or not self.ping_interval >= 0:
                raise ValueError("sharded is 1/0 or true/false; health_check_interval a number of seconds >= 0")
            self.history_size = int(own.get("history", "0"))
            self.history_ttl = float(own.get("history_ttl", "3600"))
            if self.history_size < 0 or not self.history_ttl > 0:
                raise ValueError("history is a number of messages >= 0; history_ttl seconds > 0")
            rest = urlencode([(key, value) for key, value in query if key not in _OWN_OPTIONS])
            self._options: dict[str, Any] = dict(parse_url(urlunsplit(parts._replace(query=rest))))
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis broker URL {self.safe_url}: {exc}") from exc
        self.sharded = sharded
        prefix = own.get("prefix", "asgi_ws:").encode()
        self._prefix = b"{" + prefix + b"}" if sharded else prefix
        self._sub, self._unsub = (b"SSUBSCRIBE", b"SUNSUBSCRIBE") if sharded else (b"SUBSCRIBE", b"UNSUBSCRIBE")
        self._message = b"smessage" if sharded else b"message"
        self._address: tuple[str, int] | None = None  # the cluster node serving our slot, when not the URL's
        self._names: dict[bytes, str] = {}  # Redis channel -> name, for every channel we want
        self._replies: collections.deque[tuple[bytes | None, asyncio.Future[int | None] | None]] = collections.deque()
        self._conn: AbstractConnection | None = None
        self._publisher: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver = _nowhere
        self._on_event: OnEvent | None = None
        self._closed = False
        self._heard = 0  # responses read so far: proof of life for the keepalive
        self._stale: str | None = None  # why the keepalive gave the connection up
        self._lost_at: float | None = None
        self._attempt = 0
        self._delay = backoff_delays()

    # -- public API --------------------------------------------------------------------------

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        """Connect, or raise :class:`~asgi_ws.exceptions.BrokerUnavailable` naming the URL."""
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver, self._on_event = deliver, on_event
        if self._task is not None:
            return
        self._publisher = self._new_publisher()
        try:
            conn = await self._open()
        except (RedisError, OSError) as exc:
            await self._publisher.aclose()
            self._publisher = None
            raise BrokerUnavailable(self._scrub(f"cannot connect to Redis at {self.safe_url}: {exc}")) from exc
        self._task = asyncio.create_task(self._run(conn), name=f"asgi_ws redis reader {self.safe_url}")

    async def close(self) -> None:
        """Stop reading and close both connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        conn = self._conn  # still open if the reader was cancelled before it ever ran
        self._drop()
        if conn is not None:
            await conn.disconnect(nowait=True)
        self._names.clear()
        if self._publisher is not None:
            await self._publisher.aclose()

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Publish once, without waiting for a reconnection or buffering; with history, return
        the message's position (its stream id).

        Raises:
            BrokerError: Redis cannot be reached (within ``socket_connect_timeout``) or refused.
        """
        self._check()
        check_channel(channel)
        key = self._key(channel)
        try:
            try:
                return await self._publish(key, payload)
            except MovedError as moved:  # sharded, and the cluster moved our slot: follow once
                await self._move((moved.host, moved.port))
                return await self._publish(key, payload)
        except (RedisError, OSError) as exc:
            raise BrokerError(self._scrub(f"could not publish to Redis at {self.safe_url}: {exc}")) from None

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """Messages after ``after`` from the channel's stream; None if trimmed past it
        (:func:`asgi_ws.brokers.history.after_history`).

        Raises:
            BrokerError: no history configured, or Redis unreachable.
        """
        if not self.history_size:
            return await super().history(channel, after)
        self._check()
        try:
            client: Any = self._client()  # redis-py's reply types are unions of everything
            reply = await client.eval(_HISTORY, 1, self._key(channel), after)
        except (RedisError, OSError) as exc:
            raise BrokerError(self._scrub(f"could not read history from Redis at {self.safe_url}: {exc}")) from None
        if not reply:  # no stream: nothing was published for history_ttl seconds, nothing is missing
            return []
        return after_history(after, _text(reply[0]), _unpack_entries(reply[1]))

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        self._check()
        try:
            client: Any = self._client()
            newest = await client.xrevrange(self._key(channel), max="+", min="-", count=1)
        except (RedisError, OSError) as exc:
            raise BrokerError(self._scrub(f"could not read history from Redis at {self.safe_url}: {exc}")) from None
        return _text(newest[0][0]) if newest else START

    async def subscribe(self, channel: str) -> None:
        """Subscribe; returns once Redis has confirmed (at once during an outage: the
        subscription is then made on reconnection)."""
        self._check()
        check_channel(channel)
        key = self._key(channel)
        if key in self._names and not self._replies:
            return  # subscribed and confirmed
        self._names[key] = channel
        try:
            await self._confirm(self._sub, key)
        except BrokerError:
            self._names.pop(key, None)
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe; nothing more is delivered on ``channel`` once called."""
        self._check()
        check_channel(channel)
        key = self._key(channel)
        if self._names.pop(key, None) is not None:
            await self._confirm(self._unsub, key)

    async def subscription_count(self) -> int:
        """This broker's subscriptions as counted by Redis (for its own connection only).

        Raises:
            BrokerError: during an outage.
        """
        self._check()
        count = await self._confirm(self._unsub, self._prefix)  # no channel is named "": never subscribed
        if count is None:
            raise BrokerError(f"not connected to Redis at {self.safe_url}: reconnecting")
        return count

    # -- connections -------------------------------------------------------------------------

    def _key(self, channel: str) -> bytes:
        return self._prefix + channel.encode("utf-8", "surrogatepass")

    def _check(self) -> None:
        if self._closed or self._task is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")

    def _client(self) -> Redis:
        if self._publisher is None:
            raise BrokerClosed("the broker is closed")
        return self._publisher

    def _scrub(self, text: str) -> str:
        password = self._options.get("password")
        return text.replace(password, "***") if password else text

    def _kwargs(self) -> dict[str, Any]:
        kwargs = dict(self._options)
        if self._address is not None:
            kwargs["host"], kwargs["port"] = self._address
        return kwargs

    def _new_publisher(self) -> Redis:
        kwargs = self._kwargs()
        kwargs.setdefault("max_connections", POOL_SIZE)
        kwargs.setdefault("timeout", POOL_TIMEOUT)  # to wait for a free connection
        # One immediate retry, on connection errors only: a pooled connection may predate a restart.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        return Redis.from_pool(BlockingConnectionPool(retry=retry, **kwargs))

    async def _publish(self, key: bytes, payload: bytes) -> str | None:
        client = self._client()
        if self.history_size:
            command = "SPUBLISH" if self.sharded else "PUBLISH"
            ttl_ms = max(1, int(self.history_ttl * 1000))
            position = await client.eval(_PUBLISH_KEPT, 1, key, payload, self.history_size, ttl_ms, command)
            return position.decode() if isinstance(position, bytes) else str(position)
        await (client.spublish(key, payload) if self.sharded else client.publish(key, payload))
        return None

    async def _move(self, address: tuple[str, int] | None) -> None:
        if address != self._address:
            self._address = address
            old, self._publisher = self._publisher, self._new_publisher()
            if old is not None:
                await old.aclose()

    async def _locate(self) -> None:
        """Sharded mode: find the node serving our hash slot (SPUBLISH answers MOVED elsewhere)."""
        for _ in range(5):
            try:
                await self._client().spublish(self._prefix, b"")  # no channel is named "": nobody receives it
                return
            except MovedError as moved:
                await self._move((moved.host, moved.port))
            except RedisConnectionError:
                if self._address is None:
                    raise
                await self._move(None)  # that node is gone: start again from the URL's
        raise BrokerError(f"too many cluster redirections from {self.safe_url}")

    async def _open(self) -> AbstractConnection:
        """Connect the subscriber link and (re)subscribe to every wanted channel."""
        if self.sharded:
            await self._locate()
        kwargs = self._kwargs()
        for pool_option in ("max_connections", "timeout"):
            kwargs.pop(pool_option, None)
        cls = kwargs.pop("connection_class", Connection)
        conn: AbstractConnection = cls(**{**kwargs, "protocol": 2, "health_check_interval": 0})
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            # From now on reads block for as long as it takes, and writes happen in the caller's
            # task before it yields, so commands reach the socket in the order of self._replies.
            conn.socket_timeout = None
            self._conn = conn
            if self._lost_at is not None:  # reconnecting: restore, then report (after the probe's reply)
                restore = [(self._sub, key) for key in self._names]
                done = await self._command(conn, *restore, (self._unsub, self._prefix))
                done.add_done_callback(functools.partial(self._restored, conn))
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return conn

    def _drop(self) -> None:
        """The subscriber link is gone: release everyone waiting for a reply."""
        self._conn = None
        self._stale = None
        while self._replies:
            future = self._replies.popleft()[1]
            if future is not None and not future.done():
                future.set_result(None)

    def _restored(self, conn: AbstractConnection, _: asyncio.Future[int | None]) -> None:
        if self._conn is not conn or self._lost_at is None:
            return  # lost again before the subscriptions were back
        lost = asyncio.get_running_loop().time() - self._lost_at
        self._lost_at, self._attempt = None, 0
        logger.warning(
            "reconnected to Redis at %s, %d subscription(s) restored, after %.2f s without it: "
            "messages published meanwhile may be lost",
            self.safe_url,
            len(self._names),
            lost,
        )
        emit_event(self._on_event, BrokerEvent("reconnected", url=self.safe_url, lost_seconds=lost))

    # -- commands on the subscriber link ---------------------------------------------------------

    async def _command(self, conn: AbstractConnection, *commands: tuple[bytes, ...]) -> asyncio.Future[int | None]:
        """Send commands of one reply each; return the future of the last reply."""
        if not conn.is_connected:  # redis-py would silently open a fresh, unsubscribed socket
            raise RedisConnectionError("the subscriber connection is closed")
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        last = len(commands) - 1
        self._replies.extend(
            (c[1] if len(c) > 1 else None, future if i == last else None) for i, c in enumerate(commands)
        )
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        return future

    async def _confirm(self, command: bytes, key: bytes) -> int | None:
        """Send one (un)subscribe and return the subscription count Redis replies with; None if
        the link is down or lost meanwhile (the reader then restores ``self._names``)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            future = await self._command(conn, (command, key))
        except (RedisError, OSError):
            return None  # the reader sees the loss too, and reconnects
        return await future

    def _on_reply(self, response: Any) -> None:
        key = None if isinstance(response, bytes) or response[0] == b"pong" else response[1]  # PONG: no key
        if self._replies and self._replies[0][0] == key:
            future = self._replies.popleft()[1]
            if future is not None and not future.done():
                future.set_result(response[2] if key is not None else None)
        elif response[0] == b"sunsubscribe" and key in self._names:  # the cluster moved our slot
            raise RedisConnectionError("Redis Cluster unsubscribed us: our hash slot moved")

    def _on_error(self, error: ResponseError) -> None:
        if not self._replies:
            raise error
        key, future = self._replies.popleft()
        message = self._scrub(f"Redis at {self.safe_url} refused to subscribe: {error}")
        if future is not None and not future.done():
            future.set_exception(BrokerError(message))
        else:
            logger.error("%s (channel %r)", message, key)

    # -- the reader task -----------------------------------------------------------------------

    async def _run(self, conn: AbstractConnection | None) -> None:
        """Read and deliver; on a loss, report it and reconnect with backoff until closed."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._open()
                    await self._serve(conn)
                except Exception as exc:  # RedisError, OSError; anything else is a bug, but must not stop delivery
                    if not isinstance(exc, (RedisError, OSError)):
                        logger.exception("unexpected error reading from Redis at %s", self.safe_url)
                    error = self._scrub(self._stale or f"{type(exc).__name__}: {exc}")
                    self._drop()
                    if conn is not None:
                        await conn.disconnect(nowait=True)
                        conn = None
                    if self._lost_at is None:
                        self._lost_at = loop.time()
                        logger.warning("lost the connection to Redis at %s (%s): reconnecting", self.safe_url, error)
                        emit_event(self._on_event, BrokerEvent("disconnected", url=self.safe_url, error=error))
                    else:
                        logger.debug("reconnection to Redis at %s failed: %s", self.safe_url, error)
                    await asyncio.sleep(self._delay(self._attempt))
                    self._attempt += 1
        finally:
            if conn is not None:
                await conn.disconnect(nowait=True)

    async def _serve(self, conn: AbstractConnection) -> None:
        keepalive = asyncio.create_task(self._keepalive(conn)) if self.ping_interval else None
        names, message, read = self._names, self._message, conn.read_response
        try:
            while True:
                try:
                    response = await read()
                except MovedError:
                    raise  # a subscribe reached the wrong cluster node: reconnect and locate
                except ResponseError as error:
                    self._on_error(error)
                    continue
                self._heard += 1
                if response[0] == message:
                    name = names.get(response[1])
                    if name is not None:
                        try:
                            if self.history_size:
                                position, _, payload = response[2].partition(b" ")
                                self._deliver(name, payload, position.decode())
                            else:
                                self._deliver(name, response[2])
                        except Exception:
                            logger.exception("delivering a message of channel %r failed", name)
                else:
                    self._on_reply(response)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                await asyncio.wait([keepalive])

    async def _keepalive(self, conn: AbstractConnection) -> None:
        """PING after ``ping_interval`` quiet seconds; no reply within as many: the link is dead."""
        interval = self.ping_interval
        while True:
            heard = self._heard
            await asyncio.sleep(interval)
            if self._heard != heard:
                continue
            try:
                await asyncio.wait_for(self._ping(conn), interval)
            except asyncio.TimeoutError:
                self._stale = f"no reply to PING within {interval:g} s"
                await conn.disconnect(nowait=True)  # wakes the reader up with a ConnectionError
                return
            except (RedisError, OSError):
                return  # the reader sees the loss

    async def _ping(self, conn: AbstractConnection) -> None:
        await (await self._command(conn, (b"PING",)))


def _unpack_entries(packed: bytes) -> list[tuple[str, bytes]]:
    """The entries of the history script: ``<id> <length>\\n<payload>`` one after the other."""
    entries: list[tuple[str, bytes]] = []
    offset, end = 0, len(packed)
    while offset < end:
        newline = packed.index(b"\n", offset)
        entry_id, _, length = packed[offset:newline].partition(b" ")
        offset = newline + 1 + int(length)
        entries.append((entry_id.decode(), packed[newline + 1 : offset]))
    return entries


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nowhere(channel: str, payload: bytes, position: str | None = None, /) -> None:
    """The deliver callback before connect()."""


__all__ = ["POOL_SIZE", "POOL_TIMEOUT", "RedisBroker"]
