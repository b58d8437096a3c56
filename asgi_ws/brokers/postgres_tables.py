"""What :class:`~asgi_ws.brokers.postgres.PostgresBroker` keeps in tables, and the SQL that
reads and writes it. The methods raise asyncpg's and the network's errors as they are: the
broker turns them into :class:`~asgi_ws.exceptions.BrokerError` or a logged loss.

- **Large payloads.** A message too large for a notification goes into the UNLOGGED table
  ``<prefix>payloads`` (created on first use) and the notification carries its row id;
  listeners fetch rows by id. Publishers delete rows older than ``retention`` seconds in the
  same round trip, at most every ``retention / 4`` seconds.
- **History** (``?history=N&history_ttl=3600``). Each channel's messages are rows of the table
  ``<prefix>history`` (channel, position, body, time), numbered by a counter row of
  ``<prefix>channels`` (its epoch, its last number): one statement bumps the counter, inserts
  the row, deletes the rows past the last N and NOTIFYs with the position in front, so the
  message is kept in the same transaction that announces it. The counter's row lock orders the
  commits of one channel, and PostgreSQL delivers notifications in commit order: every listener
  sees a channel's positions in order. Rows older than ``history_ttl`` seconds are deleted by
  publishers (at most every ``history_ttl / 4`` seconds); a channel quiet for twice as long loses
  its counter too, and its next message starts a new epoch.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from .base import START, position_key
from .history import after_history, position


class Tables:
    """The payload and history tables of one broker (``prefix``), over its pool's connections."""

    def __init__(self, prefix: str, *, timeout: float, retention: float, history_size: int, history_ttl: float) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.retention = retention
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.payloads = f'"{prefix}payloads"'
        self.history = f'"{prefix}history"'
        self.channels = f'"{prefix}channels"'
        self._last_cleanup = 0.0
        self._last_history_cleanup = 0.0

    # -- large payloads ------------------------------------------------------------------------

    async def publish_large(self, conn: Any, ident: str, name: bytes, payload: bytes) -> None:
        """Keep ``payload`` in the payloads table and NOTIFY ``ident`` with its row id."""
        insert = (
            f"WITH ins AS (INSERT INTO {self.payloads} (channel, body) VALUES ($2, $3) RETURNING id)"
            " SELECT pg_notify($1, 'r' || id) FROM ins"
        )
        try:
            await conn.execute(insert, ident, name, payload, timeout=self.timeout)
        except asyncpg.UndefinedTableError:
            with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                await conn.execute(  # another process may be creating it at the same moment
                    f"CREATE UNLOGGED TABLE IF NOT EXISTS {self.payloads} (id bigserial PRIMARY KEY,"
                    " channel bytea NOT NULL, body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now());"
                    f' CREATE INDEX IF NOT EXISTS "{self.prefix}payloads_created_at" ON {self.payloads} (created_at)'
                )
            await conn.execute(insert, ident, name, payload, timeout=self.timeout)
        if time.monotonic() - self._last_cleanup >= self.retention / 4:
            self._last_cleanup = time.monotonic()
            cleanup = f"DELETE FROM {self.payloads} WHERE created_at < now() - make_interval(secs => $1)"
            await conn.execute(cleanup, self.retention, timeout=self.timeout)

    async def large_payloads(self, pool: Any, ids: list[int]) -> dict[int, tuple[str, bytes]]:
        """The ``(channel, payload)`` of the rows ``ids`` that are still there."""
        found: dict[int, tuple[str, bytes]] = {}
        async with pool.acquire(timeout=self.timeout) as conn:
            query = f"SELECT id, channel, body FROM {self.payloads} WHERE id = ANY($1::bigint[])"
            for row_id, name, body in await conn.fetch(query, ids, timeout=self.timeout):
                found[row_id] = (name.decode("utf-8", "surrogatepass"), body)
        return found

    # -- history ---------------------------------------------------------------------------------

    async def create_history(self, conn: Any) -> None:
        with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            await conn.execute(  # another process may be creating them at the same moment
                f"CREATE TABLE IF NOT EXISTS {self.channels} (channel bytea PRIMARY KEY,"
                " epoch bigint NOT NULL, last bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());"
                f" CREATE TABLE IF NOT EXISTS {self.history} (channel bytea NOT NULL, pos bigint NOT NULL,"
                " body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (channel, pos));"
                f' CREATE INDEX IF NOT EXISTS "{self.prefix}history_created_at" ON {self.history} (created_at)'
            )

    async def publish_kept(self, pool: Any, ident: str, channel: str, payload: bytes, announce: str) -> str:
        """Number, keep and announce one message in one statement (``announce``: the notification
        after its position, :func:`~asgi_ws.brokers.postgres_notify.encode_kept`); its position."""
        name = channel.encode("utf-8", "surrogatepass")
        statement = (
            f"WITH c AS (INSERT INTO {self.channels} AS c (channel, epoch, last)"
            " VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 1)"
            " ON CONFLICT (channel) DO UPDATE SET last = c.last + 1, updated_at = now() RETURNING epoch, last),"
            f" h AS (INSERT INTO {self.history} (channel, pos, body) SELECT $1, last, $2 FROM c),"
            f" t AS (DELETE FROM {self.history} d USING c WHERE d.channel = $1 AND d.pos <= c.last - $3)"
            " SELECT epoch, last, pg_notify($4, 'p' || epoch || '-' || last || ' ' || $5) FROM c"
        )
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                args = (name, payload, self.history_size, ident, announce)
                row = await conn.fetchrow(statement, *args, timeout=self.timeout)
                if time.monotonic() - self._last_history_cleanup >= self.history_ttl / 4:
                    self._last_history_cleanup = time.monotonic()
                    await self._age_out(conn)
        except asyncpg.UndefinedTableError:
            async with pool.acquire(timeout=self.timeout) as conn:
                await self.create_history(conn)
            return await self.publish_kept(pool, ident, channel, payload, announce)
        return position(row[0], row[1])

    async def _age_out(self, conn: Any) -> None:
        """Delete the messages older than ``history_ttl``, and the counters of channels quiet
        for twice as long (their next message starts a new epoch)."""
        await conn.execute(
            f"DELETE FROM {self.history} WHERE created_at < now() - make_interval(secs => $1)",
            self.history_ttl,
            timeout=self.timeout,
        )
        await conn.execute(
            f"DELETE FROM {self.channels} c WHERE updated_at < now() - make_interval(secs => $1)"
            f" AND NOT EXISTS (SELECT 1 FROM {self.history} h WHERE h.channel = c.channel)",
            2 * self.history_ttl,
            timeout=self.timeout,
        )

    async def after(self, pool: Any, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """The messages of ``channel`` after ``after`` (:func:`asgi_ws.brokers.history.after_history`),
        read in one statement."""
        after_epoch, after_number = position_key(after)
        query = (
            f"SELECT c.epoch, c.last, (SELECT min(pos) FROM {self.history} WHERE channel = $1), h.pos, h.body"
            f" FROM {self.channels} c LEFT JOIN {self.history} h ON h.channel = c.channel"
            " AND h.pos > CASE WHEN c.epoch = $2 THEN $3 ELSE 0 END WHERE c.channel = $1 ORDER BY h.pos"
        )
        name = channel.encode("utf-8", "surrogatepass")
        async with pool.acquire(timeout=self.timeout) as conn:
            rows = await conn.fetch(query, name, after_epoch, after_number, timeout=self.timeout)
        if not rows:
            return []  # never published, or quiet for long enough that its counter was dropped
        epoch, last, oldest = rows[0][0], rows[0][1], rows[0][2]
        entries = [(position(epoch, row[3]), bytes(row[4])) for row in rows if row[3] is not None]
        kept = position(epoch, oldest) if oldest is not None else None
        return after_history(after, kept, entries, last=position(epoch, last))

    async def last_position(self, pool: Any, channel: str) -> str:
        async with pool.acquire(timeout=self.timeout) as conn:
            row = await conn.fetchrow(
                f"SELECT epoch, last FROM {self.channels} WHERE channel = $1",
                channel.encode("utf-8", "surrogatepass"),
                timeout=self.timeout,
            )
        return position(row[0], row[1]) if row is not None else START

    async def kept_payload(self, pool: Any, channel: str, at: str) -> bytes | None:
        """The body of the message at position ``at``; None when it is no longer kept."""
        epoch, number = position_key(at)
        query = (
            f"SELECT h.body FROM {self.history} h JOIN {self.channels} c ON c.channel = h.channel"
            " WHERE h.channel = $1 AND h.pos = $2 AND c.epoch = $3"
        )
        async with pool.acquire(timeout=self.timeout) as conn:
            name = channel.encode("utf-8", "surrogatepass")
            body = await conn.fetchval(query, name, number, epoch, timeout=self.timeout)
        return bytes(body) if body is not None else None


__all__ = ["Tables"]
