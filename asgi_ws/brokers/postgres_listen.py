"""The LISTEN connection of a :class:`~asgi_ws.brokers.postgres.PostgresBroker`: which channels
it listens on, its health checks, and its replacement after a loss.

asyncpg's termination callback and a ``SELECT 1`` every ``keepalive`` seconds watch the
connection (a peer that vanished silently, encode/broadcaster#66, fails the keepalive within
``timeout``). On a loss the broker reconnects with full-jitter backoff, LISTENs again on every
wanted channel and reports both events. ``subscribe`` and ``unsubscribe`` during an outage
change the set that the reconnection restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from .base import BrokerEvent, OnEvent, backoff_delays, describe_error, emit_event, retry
from .postgres_notify import channel_ident

logger = logging.getLogger("asgi_ws.brokers.postgres")

# What a lost or refused connection raises (asyncio.TimeoutError is TimeoutError from 3.11 on).
FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class Listener:
    """The LISTEN connection, and the channels wanted on it (see the module docstring).

    Args:
        dsn: what asyncpg connects to.
        prefix: the broker's prefix (:func:`~asgi_ws.brokers.postgres_notify.channel_ident`).
        timeout: seconds for connecting, each LISTEN/UNLISTEN, and each health check.
        keepalive: seconds between health checks.
        url: the broker's URL without its password, for logs and events.
        secret: the password, kept out of logged errors.
        on_notify: asyncpg's listener callback, for every channel.
        spawn: starts the broker's background tasks (the keepalive, a reconnection).
    """

    def __init__(
        self,
        dsn: str,
        *,
        prefix: str,
        timeout: float,
        keepalive: float,
        url: str,
        secret: str | None,
        on_notify: Callable[[Any, int, str, str], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._dsn = dsn
        self._prefix = prefix
        self._timeout = timeout
        self._keepalive = keepalive
        self._url = url
        self._secret = secret
        self._on_notify = on_notify
        self._spawn = spawn
        self.on_event: OnEvent | None = None
        self.conn: Any = None  # None while reconnecting
        self._lock = asyncio.Lock()  # one operation at a time on the connection
        self.channels: set[str] = set()
        self._idents: dict[str, int] = {}  # LISTENed identifier -> number of channels mapped to it
        self._stopped = False

    async def open(self) -> Any:
        """Open a LISTEN connection, LISTEN on every wanted channel, make it the current one."""
        conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        try:
            conn.add_termination_listener(lambda conn: self.lost(conn, "the connection was closed"))
            async with self._lock:  # subscribe/unsubscribe wait until the set is restored
                for ident in list(self._idents):
                    await asyncio.wait_for(conn.add_listener(ident, self._on_notify), self._timeout)
                self.conn = conn
        except BaseException:
            conn.terminate()
            raise
        return conn

    def stop(self) -> None:
        """The broker is closing: want nothing more, replace nothing more."""
        self._stopped = True
        self.channels.clear()
        self._idents.clear()

    async def close(self) -> None:
        """Close the connection (terminated if that fails)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(*FAILURES):
                await conn.close(timeout=self._timeout)

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            if channel in self.channels:
                return
            self.channels.add(channel)
            ident = channel_ident(self._prefix, channel)
            self._idents[ident] = self._idents.get(ident, 0) + 1
            if self._idents[ident] == 1:
                await self._run(lambda conn: conn.add_listener(ident, self._on_notify))

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel not in self.channels:
                return
            self.channels.discard(channel)
            ident = channel_ident(self._prefix, channel)
            self._idents[ident] -= 1
            if self._idents[ident] == 0:
                del self._idents[ident]
                await self._run(lambda conn: conn.remove_listener(ident, self._on_notify))

    async def count(self) -> int:
        """Channels LISTENed to, asked of the server; during an outage, those the reconnection restores."""
        async with self._lock:
            count = await self._run(lambda conn: conn.fetchval("SELECT count(*) FROM pg_listening_channels()"))
        return len(self._idents) if count is None else int(count)

    async def _run(self, operation: Callable[[Any], Awaitable[Any]]) -> Any:
        # Under self._lock. None when there is no connection or it just failed: then the
        # reconnection restores the wanted state, so the caller need not fail.
        conn = self.conn
        if conn is None:
            return None
        try:
            return await asyncio.wait_for(operation(conn), self._timeout)
        except FAILURES as exc:
            self.lost(conn, self._describe(exc))
            return None

    def lost(self, conn: Any, error: str) -> None:
        if self._stopped or conn is not self.conn:
            return  # closing, or already being replaced
        self.conn = None
        if not conn.is_closed():
            conn.terminate()
        logger.warning("lost the LISTEN connection to %s (%s); reconnecting", self._url, error)
        emit_event(self.on_event, BrokerEvent("disconnected", url=self._url, error=error))
        self._spawn(self._reconnect(time.monotonic()))

    async def _reconnect(self, since: float) -> None:
        what = f"reconnecting to {self._url}"
        await retry(self.open, FAILURES, delay=backoff_delays(0.1, 5.0), describe=self._describe, what=what)
        lost = time.monotonic() - since
        logger.warning("reconnected to %s after %.1f s; messages published meanwhile are lost", self._url, lost)
        emit_event(self.on_event, BrokerEvent("reconnected", url=self._url, lost_seconds=lost))

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, self._secret)

    async def keepalive(self) -> None:
        """Check the connection every ``keepalive`` seconds, forever (a task of the broker's)."""
        while True:
            await asyncio.sleep(self._keepalive)
            async with self._lock:
                await self._run(lambda conn: conn.fetchval("SELECT 1"))


__all__ = ["FAILURES", "Listener"]
