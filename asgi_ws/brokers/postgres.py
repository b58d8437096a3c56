"""``postgres://``: PostgreSQL LISTEN/NOTIFY through asyncpg, so the database an app already
has can be its broker.

- **Connections.** One connection LISTENs; publishing and fetching use a small pool
  (``SELECT pg_notify($1, $2)``). PostgreSQL delivers notifications in commit order, so the
  awaited publishes of one publisher arrive in order.
- **Channel names.** A channel becomes ``prefix`` plus 32 hex digits of the SHA-256 of its
  UTF-8 name: lowercase, fixed length, under the 63-byte identifier limit. The real name travels
  in the payload and is checked on receipt, so distinct names never mix, even on a collision.
- **Payloads.** A notification carries text of at most 7,999 bytes (with the default 8 kB
  block size). A message that fits goes inline: ``t<n>:<name><body>`` when name and body are
  NUL-free UTF-8, else ``b<base64 name>:<base64 body>``. A larger one goes into the UNLOGGED
  table ``<prefix>payloads`` (created on first use) and the notification carries ``r<id>``;
  listeners fetch the row by id. Publishers delete rows older than ``retention`` seconds in
  the same round trip, at most every ``retention / 4`` seconds.
- **Order.** An inline message is delivered from asyncpg's callback directly (no task, no
  queue), unless an earlier large message is still being fetched: then it waits behind it in
  a bounded queue that one task drains, fetching consecutive references in one query.
- **History** (``?history=N&history_ttl=3600``). Each channel's messages are rows of the table
  ``<prefix>history`` (channel, position, body, time), numbered by a counter row of
  ``<prefix>channels`` (its epoch, its last number): one statement bumps the counter, inserts
  the row, deletes the rows past the last N and NOTIFYs with the position in front, so the
  message is kept in the same transaction that announces it. The counter's row lock orders the
  commits of one channel, and PostgreSQL delivers notifications in commit order: every listener
  sees a channel's positions in order. Rows older than ``history_ttl`` seconds are deleted by
  publishers (at most every ``history_ttl / 4`` seconds); a channel quiet for twice as long loses
  its counter too, and its next message starts a new epoch. A body too large for a
  notification is read back from the history table by position.
- **Outages.** asyncpg's termination callback and a ``SELECT 1`` every ``keepalive`` seconds
  watch the LISTEN connection (a peer that vanished silently, encode/broadcaster#66, fails
  the keepalive within ``timeout``). The broker reconnects with full-jitter backoff, LISTENs
  again and reports both events. Messages published meanwhile are lost. ``subscribe`` and
  ``unsubscribe`` during an outage change the set that the reconnection restores;
  ``publish`` raises :class:`~asgi_ws.exceptions.BrokerError` within ``2 * timeout``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from .._repeated import RepeatedLog
from ..exceptions import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError
from .base import START, Broker, BrokerEvent, Deliver, OnEvent, backoff_delays, check_channel, position_key
from .history import after_history, position

logger = logging.getLogger("asgi_ws.brokers.postgres")
#: Lines a notification can cause, each time: at once, then at most one a minute with a count.
_repeated = RepeatedLog(logger, 60.0)

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,29}")
# What a lost or refused connection raises (asyncio.TimeoutError is TimeoutError from 3.11 on).
_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_FETCH_BATCH = 100  # large messages fetched per query
_POSITION_ROOM = 48  # bytes of a notification taken by "p<epoch>-<n> " in front of a kept message


def channel_ident(prefix: str, channel: str) -> str:
    """The PostgreSQL channel that ``channel`` maps to: ``prefix`` + 128 bits of SHA-256."""
    return prefix + hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _text(data: bytes, utf8: bool) -> str | None:
    # Text a notification can carry: no NUL, and valid in the server encoding (ASCII always is).
    if b"\x00" in data or not (utf8 or data.isascii()):
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def encode_inline(channel: str, payload: bytes, limit: int, utf8: bool = True) -> str | None:
    """The notification text carrying ``payload`` for ``channel``, or None if over ``limit`` bytes."""
    name = channel.encode("utf-8", "surrogatepass")
    if len(name) + len(payload) + 2 > limit:
        return None
    name_text, body_text = _text(name, utf8), _text(payload, utf8)
    if name_text is not None and body_text is not None:
        head = f"t{len(name_text)}:"
        return head + name_text + body_text if len(head) + len(name) + len(payload) <= limit else None
    if 2 + 4 * (-(-len(name) // 3) + -(-len(payload) // 3)) > limit:
        return None
    return f"b{base64.b64encode(name).decode()}:{base64.b64encode(payload).decode()}"


def decode_notification(text: str) -> tuple[str, bytes] | tuple[str, bytes | None, str] | int:
    """``(channel, payload)`` of an inline notification, or the row id of a reference; with
    history, ``(channel, payload, position)``, the payload None when it is to be read from the
    history table.

    Raises:
        ValueError: ``text`` is not in this broker's format.
    """
    if text[:1] == "p":  # history: "p<epoch>-<n> " then the message, or "h<base64 channel>"
        at, _, rest = text[1:].partition(" ")
        epoch, _, number = at.partition("-")
        if not (epoch.isdigit() and number.isdigit()):
            raise ValueError("bad position")
        if rest[:1] == "h":
            return base64.b64decode(rest[1:], validate=True).decode("utf-8", "surrogatepass"), None, at
        inline = decode_notification(rest)
        if not isinstance(inline, tuple):
            raise ValueError("a reference where a message was expected")
        return inline[0], inline[1], at
    kind, rest = text[:1], text[1:]
    if kind == "t":
        length, _, rest = rest.partition(":")
        if not length.isdigit() or int(length) > len(rest):
            raise ValueError("bad text notification")
        return rest[: int(length)], rest[int(length) :].encode()
    if kind == "b":
        name, sep, body = rest.partition(":")
        if not sep:
            raise ValueError("bad base64 notification")
        decode = base64.b64decode
        return decode(name, validate=True).decode("utf-8", "surrogatepass"), decode(body, validate=True)
    if kind == "r" and rest.isdigit():
        return int(rest)
    raise ValueError("not an asgi_ws notification")


def _seconds(query: dict[str, str], name: str, default: float) -> float:
    try:
        value = float(query.pop(name, default))
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"?{name}= must be a positive number of seconds")
    return value


async def _keep_session(conn: Any) -> None:
    # The pool's default reset (UNLISTEN *, RESET ALL...) costs a round trip per publish.
    pass


class PostgresBroker(Broker):
    """PostgreSQL LISTEN/NOTIFY broker: ``postgres://user:password@host:port/db``.

    Query options, removed before the URL goes to asyncpg (which takes the rest, e.g. ``sslmode``):
    ``prefix`` (``asgi_ws_``: channel and table name prefix, ``[a-z_][a-z0-9_]{0,29}``),
    ``keepalive`` (10 s between health checks of the LISTEN connection), ``timeout`` (5 s
    for connecting, publishing, fetching and health checks), ``retention`` (60 s that large
    payloads stay in the table) and ``pool_size`` (4 connections for publishing and fetching).
    """

    schemes = ("postgres", "postgresql")
    #: Messages that may wait behind a large one being fetched; beyond, new ones are dropped and logged.
    max_pending = 10_000

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.prefix = query.pop("prefix", "asgi_ws_")
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError("?prefix= must match [a-z_][a-z0-9_]{0,29}")
        self.keepalive = _seconds(query, "keepalive", 10.0)
        self.timeout = _seconds(query, "timeout", 5.0)
        self.retention = _seconds(query, "retention", 60.0)
        self.pool_size = int(_seconds(query, "pool_size", 4.0))
        if self.pool_size < 1:
            raise ConfigurationError("?pool_size= must be at least 1")
        history = query.pop("history", "0")
        if not history.isdigit():
            raise ConfigurationError("?history= is a number of messages >= 0")
        self.history_size = int(history)
        self.history_ttl = _seconds(query, "history_ttl", 3600.0)
        self.history_table = f'"{self.prefix}history"'
        self.channels_table = f'"{self.prefix}channels"'
        self._last_history_cleanup = 0.0
        self._dsn = urlunsplit(parts._replace(query=urlencode(query)))
        self.table = f'"{self.prefix}payloads"'
        self._deliver: Deliver | None = None
        self._on_event: OnEvent | None = None
        self._conn: Any = None  # the LISTEN connection; None while reconnecting
        self._pool: Any = None
        self._lock = asyncio.Lock()  # one operation at a time on the LISTEN connection
        self._channels: set[str] = set()
        self._idents: dict[str, int] = {}  # LISTENed identifier -> number of channels mapped to it
        self._pending: collections.deque[tuple[str, bytes] | tuple[str, bytes | None, str] | int] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._limit = 7999
        self._utf8 = True
        self._last_cleanup = 0.0
        #: Messages dropped because ``max_pending`` were waiting.
        self.dropped = 0

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        """Open the LISTEN connection and the pool.

        Raises:
            BrokerUnavailable: PostgreSQL cannot be reached or refused us; names the URL, not its password.
            BrokerClosed: the broker was closed.
        """
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver, self._on_event = deliver, on_event
        try:
            conn = await self._listen()
            # min_size=0: no connection floor, whose upkeep logs a traceback a second in an outage.
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=0, max_size=self.pool_size, timeout=self.timeout, reset=_keep_session
            )
            limit, encoding = await conn.fetchrow(
                "SELECT current_setting('block_size')::int - current_setting('max_identifier_length')::int - 130,"
                " current_setting('server_encoding')",
                timeout=self.timeout,
            )
        except _FAILURES as exc:
            await self._teardown()
            raise BrokerUnavailable(f"cannot connect to PostgreSQL at {self.safe_url}: {self._describe(exc)}") from exc
        self._limit, self._utf8 = limit, encoding == "UTF8"
        if self.history_size:
            try:
                async with self._pool.acquire(timeout=self.timeout) as pooled:
                    await self._create_history_tables(pooled)
            except _FAILURES as exc:
                await self._teardown()
                raise BrokerUnavailable(
                    f"cannot create the history tables on PostgreSQL at {self.safe_url}: {self._describe(exc)}"
                ) from exc
        self._spawn(self._keepalive())

    async def close(self) -> None:
        """Close both connections; idempotent. Messages not delivered yet are dropped."""
        if not self._closed:
            self._closed = True
            self._deliver = None
            self._channels.clear()
            self._idents.clear()
            self._pending.clear()
            await self._teardown()

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        conn, pool, self._conn, self._pool = self._conn, self._pool, None, None
        if conn is not None:
            with contextlib.suppress(*_FAILURES):
                await conn.close(timeout=self.timeout)  # terminates the connection if that fails
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except _FAILURES:
                pool.terminate()

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Send ``payload`` to the subscribers of ``channel`` of every broker on this database;
        with history, keep it and return its position.

        Raises:
            ValueError: ``channel`` is not a valid name.
            BrokerError: PostgreSQL did not take the message within ``2 * timeout`` seconds
                (an outage, for instance). It is not retried: the caller decides.
            BrokerClosed: the broker is closed or not connected.
        """
        pool = self._check()
        check_channel(channel)
        ident = channel_ident(self.prefix, channel)
        if self.history_size:
            return await self._publish_kept(pool, ident, channel, payload)
        text = encode_inline(channel, payload, self._limit, self._utf8)
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                if text is not None:
                    await conn.execute("SELECT pg_notify($1, $2)", ident, text, timeout=self.timeout)
                else:
                    await self._publish_large(conn, ident, channel.encode("utf-8", "surrogatepass"), payload)
        except _FAILURES as exc:
            raise BrokerError(f"could not publish to PostgreSQL at {self.safe_url}: {self._describe(exc)}") from exc
        return None

    async def _publish_large(self, conn: Any, ident: str, name: bytes, payload: bytes) -> None:
        insert = (
            f"WITH ins AS (INSERT INTO {self.table} (channel, body) VALUES ($2, $3) RETURNING id)"
            " SELECT pg_notify($1, 'r' || id) FROM ins"
        )
        try:
            await conn.execute(insert, ident, name, payload, timeout=self.timeout)
        except asyncpg.UndefinedTableError:
            with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                await conn.execute(  # another process may be creating it at the same moment
                    f"CREATE UNLOGGED TABLE IF NOT EXISTS {self.table} (id bigserial PRIMARY KEY,"
                    " channel bytea NOT NULL, body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
                    f' CREATE INDEX IF NOT EXISTS "{self.prefix}payloads_created_at" ON {self.table} (created_at)'
                )
            await conn.execute(insert, ident, name, payload, timeout=self.timeout)
        if time.monotonic() - self._last_cleanup >= self.retention / 4:
            self._last_cleanup = time.monotonic()
            cleanup = f"DELETE FROM {self.table} WHERE created_at < now() - make_interval(secs => $1)"
            await conn.execute(cleanup, self.retention, timeout=self.timeout)

    # -- history ---------------------------------------------------------------------------

    async def _create_history_tables(self, conn: Any) -> None:
        with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            await conn.execute(  # another process may be creating them at the same moment
                f"CREATE TABLE IF NOT EXISTS {self.channels_table} (channel bytea PRIMARY KEY,"
                " epoch bigint NOT NULL, last bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());"
                f" CREATE TABLE IF NOT EXISTS {self.history_table} (channel bytea NOT NULL, pos bigint NOT NULL,"
                " body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (channel, pos));"
                f' CREATE INDEX IF NOT EXISTS "{self.prefix}history_created_at" ON {self.history_table} (created_at)'
            )

    async def _publish_kept(self, pool: Any, ident: str, channel: str, payload: bytes) -> str:
        """Number, keep and announce one message in one statement; return its position."""
        name = channel.encode("utf-8", "surrogatepass")
        inline = encode_inline(channel, payload, self._limit - _POSITION_ROOM, self._utf8)
        if inline is None:  # too large for a notification: listeners read it from the table
            inline = "h" + base64.b64encode(name).decode()
        statement = (
            f"WITH c AS (INSERT INTO {self.channels_table} AS c (channel, epoch, last)"
            " VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 1)"
            " ON CONFLICT (channel) DO UPDATE SET last = c.last + 1, updated_at = now() RETURNING epoch, last),"
            f" h AS (INSERT INTO {self.history_table} (channel, pos, body) SELECT $1, last, $2 FROM c),"
            f" t AS (DELETE FROM {self.history_table} d USING c WHERE d.channel = $1 AND d.pos <= c.last - $3)"
            " SELECT epoch, last, pg_notify($4, 'p' || epoch || '-' || last || ' ' || $5) FROM c"
        )
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                args = (name, payload, self.history_size, ident, inline)
                row = await conn.fetchrow(statement, *args, timeout=self.timeout)
                if time.monotonic() - self._last_history_cleanup >= self.history_ttl / 4:
                    self._last_history_cleanup = time.monotonic()
                    await self._age_out(conn)
        except asyncpg.UndefinedTableError:
            async with pool.acquire(timeout=self.timeout) as conn:
                await self._create_history_tables(conn)
            return await self._publish_kept(pool, ident, channel, payload)
        except _FAILURES as exc:
            raise BrokerError(f"could not publish to PostgreSQL at {self.safe_url}: {self._describe(exc)}") from exc
        return position(row[0], row[1])

    async def _age_out(self, conn: Any) -> None:
        """Delete the messages older than ``history_ttl``, and the counters of channels quiet
        for twice as long (their next message starts a new epoch)."""
        await conn.execute(
            f"DELETE FROM {self.history_table} WHERE created_at < now() - make_interval(secs => $1)",
            self.history_ttl,
            timeout=self.timeout,
        )
        await conn.execute(
            f"DELETE FROM {self.channels_table} c WHERE updated_at < now() - make_interval(secs => $1)"
            f" AND NOT EXISTS (SELECT 1 FROM {self.history_table} h WHERE h.channel = c.channel)",
            2 * self.history_ttl,
            timeout=self.timeout,
        )

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """The messages of ``channel`` after ``after`` (:func:`asgi_ws.brokers.history.after_history`),
        read in one statement.

        Raises:
            BrokerError: no history configured, or PostgreSQL unreachable.
        """
        if not self.history_size:
            return await super().history(channel, after)
        pool = self._check()
        after_epoch, after_number = position_key(after)
        query = (
            f"SELECT c.epoch, c.last, (SELECT min(pos) FROM {self.history_table} WHERE channel = $1), h.pos, h.body"
            f" FROM {self.channels_table} c LEFT JOIN {self.history_table} h ON h.channel = c.channel"
            " AND h.pos > CASE WHEN c.epoch = $2 THEN $3 ELSE 0 END WHERE c.channel = $1 ORDER BY h.pos"
        )
        name = channel.encode("utf-8", "surrogatepass")
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                rows = await conn.fetch(query, name, after_epoch, after_number, timeout=self.timeout)
        except _FAILURES as exc:
            raise self._unreadable(exc) from exc
        if not rows:
            return []  # never published, or quiet for long enough that its counter was dropped
        epoch, last, oldest = rows[0][0], rows[0][1], rows[0][2]
        entries = [(position(epoch, row[3]), bytes(row[4])) for row in rows if row[3] is not None]
        kept = position(epoch, oldest) if oldest is not None else None
        return after_history(after, kept, entries, last=position(epoch, last))

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        pool = self._check()
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                row = await conn.fetchrow(
                    f"SELECT epoch, last FROM {self.channels_table} WHERE channel = $1",
                    channel.encode("utf-8", "surrogatepass"),
                    timeout=self.timeout,
                )
        except _FAILURES as exc:
            raise self._unreadable(exc) from exc
        return position(row[0], row[1]) if row is not None else START

    def _unreadable(self, exc: BaseException) -> BrokerError:
        return BrokerError(f"could not read history from PostgreSQL at {self.safe_url}: {self._describe(exc)}")

    async def _fetch_kept(self, channel: str, at: str) -> bytes | None:
        """The body of the message at position ``at`` (too large for its notification)."""
        epoch, number = position_key(at)
        query = (
            f"SELECT h.body FROM {self.history_table} h JOIN {self.channels_table} c ON c.channel = h.channel"
            " WHERE h.channel = $1 AND h.pos = $2 AND c.epoch = $3"
        )
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn:
                name = channel.encode("utf-8", "surrogatepass")
                body = await conn.fetchval(query, name, number, epoch, timeout=self.timeout)
        except _FAILURES as exc:
            logger.warning("lost a large message of %r: fetching it failed: %s", channel, self._describe(exc))
            return None
        if body is None:
            logger.warning("lost a large message of %r: no longer in %s (trimmed?)", channel, self.history_table)
        return bytes(body) if body is not None else None

    async def subscribe(self, channel: str) -> None:
        """Receive ``channel``'s messages; idempotent. During an outage, LISTENs on reconnection."""
        self._check()
        check_channel(channel)
        async with self._lock:
            if channel in self._channels:
                return
            self._channels.add(channel)
            ident = channel_ident(self.prefix, channel)
            self._idents[ident] = self._idents.get(ident, 0) + 1
            if self._idents[ident] == 1:
                await self._on_listen_connection(lambda conn: conn.add_listener(ident, self._on_notify))

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``'s messages; idempotent."""
        self._check()
        async with self._lock:
            if channel not in self._channels:
                return
            self._channels.discard(channel)
            ident = channel_ident(self.prefix, channel)
            self._idents[ident] -= 1
            if self._idents[ident] == 0:
                del self._idents[ident]
                await self._on_listen_connection(lambda conn: conn.remove_listener(ident, self._on_notify))

    async def subscription_count(self) -> int:
        """Channels LISTENed to, asked of the server; during an outage, those the reconnection restores."""
        async with self._lock:
            count = await self._on_listen_connection(
                lambda conn: conn.fetchval("SELECT count(*) FROM pg_listening_channels()")
            )
        return len(self._idents) if count is None else int(count)

    def _check(self) -> Any:
        if self._closed or self._pool is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")
        return self._pool

    async def _on_listen_connection(self, operation: Callable[[Any], Awaitable[Any]]) -> Any:
        # Under self._lock. None when there is no connection or it just failed: then the
        # reconnection restores the wanted state, so the caller need not fail.
        conn = self._conn
        if conn is None:
            return None
        try:
            return await asyncio.wait_for(operation(conn), self.timeout)
        except _FAILURES as exc:
            self._lost(conn, self._describe(exc))
            return None

    async def _listen(self) -> Any:
        """Open a LISTEN connection, LISTEN on every wanted channel, make it the current one."""
        conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
        try:
            conn.add_termination_listener(lambda conn: self._lost(conn, "the connection was closed"))
            async with self._lock:  # subscribe/unsubscribe wait until the set is restored
                for ident in list(self._idents):
                    await asyncio.wait_for(conn.add_listener(ident, self._on_notify), self.timeout)
                self._conn = conn
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _lost(self, conn: Any, error: str) -> None:
        if self._closed or conn is not self._conn:
            return  # closing, or already being replaced
        self._conn = None
        if not conn.is_closed():
            conn.terminate()
        logger.warning("lost the LISTEN connection to %s (%s); reconnecting", self.safe_url, error)
        self._emit(BrokerEvent("disconnected", url=self.safe_url, error=error))
        self._spawn(self._reconnect(time.monotonic()))

    async def _reconnect(self, since: float) -> None:
        delay = backoff_delays(0.1, 5.0)
        for attempt in itertools.count():
            await asyncio.sleep(delay(attempt))
            try:
                await self._listen()
                break
            except _FAILURES as exc:
                logger.debug("reconnecting to %s failed: %s", self.safe_url, self._describe(exc))
        lost = time.monotonic() - since
        logger.warning("reconnected to %s after %.1f s; messages published meanwhile are lost", self.safe_url, lost)
        self._emit(BrokerEvent("reconnected", url=self.safe_url, lost_seconds=lost))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            async with self._lock:
                await self._on_listen_connection(lambda conn: conn.fetchval("SELECT 1"))

    def _on_notify(self, conn: Any, pid: int, ident: str, text: str) -> None:
        # asyncpg's listener callback, called in order with loop.call_soon.
        try:
            message = decode_notification(text)
        except ValueError:
            _repeated.warning(
                "ignored a notification on %s that asgi_ws did not send: %.60r", ident, text, key="foreign"
            )
            return
        if not self._pending and isinstance(message, tuple) and len(message) == 3 and message[1] is not None:
            self._hand_over(*message)
        elif len(self._pending) >= self.max_pending:
            self.dropped += 1
            _repeated.warning(
                "dropped a message: %d are waiting behind a large one being fetched", len(self._pending), key="dropped"
            )
        else:
            self._pending.append(message)
            if self._drainer is None:
                self._drainer = self._spawn(self._drain())

    def _hand_over(self, channel: str, payload: bytes | None, at: str | None = None) -> None:
        if channel in self._channels and self._deliver is not None and payload is not None:
            try:
                if at is None:
                    self._deliver(channel, payload)
                else:
                    self._deliver(channel, payload, at)
            except Exception:
                logger.exception("deliver() failed for channel %r", channel)

    async def _drain(self) -> None:
        # Deliver the waiting messages in order, fetching the large ones a batch at a time
        # (those of a history, whose body is None, from the history table, one by one).
        fetched: dict[int, tuple[str, bytes] | None] = {}
        try:
            while self._pending:
                head = self._pending[0]
                if isinstance(head, int) and head not in fetched:
                    refs = (m for m in self._pending if isinstance(m, int))
                    fetched = await self._fetch(list(itertools.islice(refs, _FETCH_BATCH)))
                    continue
                self._pending.popleft()
                if isinstance(head, int):
                    message = fetched.pop(head)
                    if message is not None:
                        self._hand_over(*message)
                elif head[1] is None and head[2] is not None:
                    self._hand_over(head[0], await self._fetch_kept(head[0], head[2]), head[2])
                else:
                    self._hand_over(*head)
        finally:
            self._drainer = None

    async def _fetch(self, ids: list[int]) -> dict[int, tuple[str, bytes] | None]:
        found: dict[int, tuple[str, bytes] | None] = dict.fromkeys(ids)
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn:
                query = f"SELECT id, channel, body FROM {self.table} WHERE id = ANY($1::bigint[])"
                for row_id, name, body in await conn.fetch(query, ids, timeout=self.timeout):
                    found[row_id] = (name.decode("utf-8", "surrogatepass"), body)
        except _FAILURES as exc:
            logger.warning("lost %d large message(s): fetching failed: %s", len(ids), self._describe(exc))
            return found
        if None in found.values():
            lost = sum(value is None for value in found.values())
            logger.warning("lost %d large message(s): not in %s (older than retention?)", lost, self.table)
        return found

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal task of the broker for %s failed", self.safe_url, exc_info=task.exception())

    def _emit(self, event: BrokerEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("on_event() failed for %s", event.kind)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text


__all__ = ["PostgresBroker", "channel_ident", "decode_notification", "encode_inline"]
