"""``postgres://``: PostgreSQL LISTEN/NOTIFY through asyncpg, so the database an app already
has can be its broker.

- **Connections.** One connection LISTENs (:mod:`~asgi_ws.brokers.postgres_listen`);
  publishing and fetching use a small pool (``SELECT pg_notify($1, $2)``). PostgreSQL delivers
  notifications in commit order, so the awaited publishes of one publisher arrive in order.
- **Notifications** carry a channel's messages inline when they fit, else a reference to a
  table row (:mod:`~asgi_ws.brokers.postgres_notify`: the format; channel names become
  fixed-length identifiers; :mod:`~asgi_ws.brokers.postgres_tables`: the tables).
- **Order.** An inline message is delivered from asyncpg's callback directly (no task, no
  queue), unless an earlier large message is still being fetched: then it waits behind it in
  a bounded queue that one task drains, fetching consecutive references in one query.
- **History** (``?history=N&history_ttl=3600``): each channel's messages are numbered and kept
  in a table in the transaction that announces them (:mod:`~asgi_ws.brokers.postgres_tables`);
  every listener sees a channel's positions in order. A body too large for a notification is
  read back from the history table by position.
- **Outages.** The LISTEN connection is watched and replaced with backoff, both events
  reported (:mod:`~asgi_ws.brokers.postgres_listen`). Messages published meanwhile are lost.
  ``publish`` raises :class:`~asgi_ws.exceptions.BrokerError` within ``2 * timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from .._repeated import RepeatedLog
from ..exceptions import BrokerClosed, BrokerError, BrokerUnavailable, ConfigurationError
from .base import Broker, Deliver, OnEvent, check_channel, describe_error
from .postgres_listen import FAILURES as _FAILURES
from .postgres_listen import Listener
from .postgres_notify import Notification, channel_ident, decode_notification, encode_inline, encode_kept
from .postgres_tables import Tables

logger = logging.getLogger("asgi_ws.brokers.postgres")
#: Lines a notification can cause, each time: at once, then at most one a minute with a count.
_repeated = RepeatedLog(logger, 60.0)

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,29}")
_FETCH_BATCH = 100  # large messages fetched per query


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
        self._dsn = urlunsplit(parts._replace(query=urlencode(query)))
        self._secret = parts.password
        self._tables = Tables(
            self.prefix,
            timeout=self.timeout,
            retention=self.retention,
            history_size=self.history_size,
            history_ttl=self.history_ttl,
        )
        self._deliver: Deliver | None = None
        self._pool: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener = Listener(
            self._dsn,
            prefix=self.prefix,
            timeout=self.timeout,
            keepalive=self.keepalive,
            url=self.safe_url,
            secret=self._secret,
            on_notify=self._on_notify,
            spawn=self._spawn,
        )
        self._pending: collections.deque[Notification] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._limit = 7999
        self._utf8 = True
        #: Messages dropped because ``max_pending`` were waiting.
        self.dropped = 0

    @property
    def _conn(self) -> Any:
        """The LISTEN connection; None while reconnecting."""
        return self._listener.conn

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        """Open the LISTEN connection and the pool.

        Raises:
            BrokerUnavailable: PostgreSQL cannot be reached or refused us; names the URL, not its password.
            BrokerClosed: the broker was closed.
        """
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver, self._listener.on_event = deliver, on_event
        try:
            conn = await self._listener.open()
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
                    await self._tables.create_history(pooled)
            except _FAILURES as exc:
                await self._teardown()
                raise BrokerUnavailable(
                    f"cannot create the history tables on PostgreSQL at {self.safe_url}: {self._describe(exc)}"
                ) from exc
        self._spawn(self._listener.keepalive())

    async def close(self) -> None:
        """Close both connections; idempotent. Messages not delivered yet are dropped."""
        if not self._closed:
            self._closed = True
            self._deliver = None
            self._listener.stop()
            self._pending.clear()
            await self._teardown()

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        pool, self._pool = self._pool, None
        await self._listener.close()
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
        try:
            if self.history_size:
                announce = encode_kept(channel, payload, self._limit, self._utf8)
                return await self._tables.publish_kept(pool, ident, channel, payload, announce)
            text = encode_inline(channel, payload, self._limit, self._utf8)
            async with pool.acquire(timeout=self.timeout) as conn:
                if text is not None:
                    await conn.execute("SELECT pg_notify($1, $2)", ident, text, timeout=self.timeout)
                else:
                    name = channel.encode("utf-8", "surrogatepass")
                    await self._tables.publish_large(conn, ident, name, payload)
        except _FAILURES as exc:
            raise BrokerError(f"could not publish to PostgreSQL at {self.safe_url}: {self._describe(exc)}") from exc
        return None

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """The messages of ``channel`` after ``after`` (:func:`asgi_ws.brokers.history.after_history`),
        read in one statement.

        Raises:
            BrokerError: no history configured, or PostgreSQL unreachable.
        """
        if not self.history_size:
            return await super().history(channel, after)
        pool = self._check()
        try:
            return await self._tables.after(pool, channel, after)
        except _FAILURES as exc:
            raise self._unreadable(exc) from exc

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        pool = self._check()
        try:
            return await self._tables.last_position(pool, channel)
        except _FAILURES as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: BaseException) -> BrokerError:
        return BrokerError(f"could not read history from PostgreSQL at {self.safe_url}: {self._describe(exc)}")

    async def subscribe(self, channel: str) -> None:
        """Receive ``channel``'s messages; idempotent. During an outage, LISTENs on reconnection."""
        self._check()
        check_channel(channel)
        await self._listener.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``'s messages; idempotent."""
        self._check()
        await self._listener.unsubscribe(channel)

    async def subscription_count(self) -> int:
        """Channels LISTENed to, asked of the server; during an outage, those the reconnection restores."""
        return await self._listener.count()

    def _check(self) -> Any:
        if self._closed or self._pool is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")
        return self._pool

    # -- receiving -------------------------------------------------------------------------------

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
        if channel in self._listener.channels and self._deliver is not None and payload is not None:
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
            found.update(await self._tables.large_payloads(self._pool, ids))
        except _FAILURES as exc:
            logger.warning("lost %d large message(s): fetching failed: %s", len(ids), self._describe(exc))
            return found
        if None in found.values():
            lost = sum(value is None for value in found.values())
            logger.warning("lost %d large message(s): not in %s (older than retention?)", lost, self._tables.payloads)
        return found

    async def _fetch_kept(self, channel: str, at: str) -> bytes | None:
        """The body of the message at position ``at`` (too large for its notification)."""
        try:
            body = await self._tables.kept_payload(self._pool, channel, at)
        except _FAILURES as exc:
            logger.warning("lost a large message of %r: fetching it failed: %s", channel, self._describe(exc))
            return None
        if body is None:
            logger.warning("lost a large message of %r: no longer in %s (trimmed?)", channel, self._tables.history)
        return body

    # -- tasks and errors ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal task of the broker for %s failed", self.safe_url, exc_info=task.exception())

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._secret)


__all__ = ["PostgresBroker", "channel_ident", "decode_notification", "encode_inline"]
