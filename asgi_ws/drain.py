"""Shutdown that drains: flush, close with 1001, refuse new handshakes with 503.

:func:`drain` is the one shutdown path of asgi_ws connections. It

1. marks the running event loop as draining: from then on a new handshake through any
   asgi_ws stack is refused with HTTP **503** ``server shutting down`` before the application
   runs (the check is in :class:`~asgi_ws.connection.Connection`'s outermost ``run``, the one
   place every stack with a connection passes through before accept);
2. for every live connection of the loop, waits (up to the deadline) for its outbound backlog
   to be written, then closes it with **1001** ``going away`` through
   :meth:`Connection.close <asgi_ws.connection.Connection.close>`: the application's
   ``receive()`` returns the 1001 disconnect and its own clean-up runs; nothing is cancelled.
   A connection still in its handshake is closed right after its accept;
3. waits until every one of those applications returned, and for the library's background
   work of their ends (a resumable session stores its last frames and stays in the store:
   a close the server started is not the client's goodbye, so the client resumes elsewhere).

The registry :data:`LIVE` costs one set entry per connection whose application runs;
``docs/shutdown.md`` explains how ``asgi-ws serve`` (:mod:`asgi_ws.server`) runs the drain
before uvicorn's own shutdown, and what a plain ``uvicorn app:app`` gets.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _background
from .close_codes import CloseCode, check_close_code
from .deny import deny
from .types import Scope, Send

if TYPE_CHECKING:
    from .connection import Connection

logger = logging.getLogger("asgi_ws.drain")

#: Seconds :func:`drain` gives connections by default (``asgi-ws serve --drain-timeout``).
DRAIN_TIMEOUT = 10.0
#: The answer to a handshake arriving during a drain.
REFUSAL_STATUS = 503
REFUSAL_REASON = "server shutting down"

#: The asgi_ws connections of this process whose application runs (added and removed by
#: :class:`~asgi_ws.connection.Connection`).
LIVE: set[Connection] = set()
# Event loops on which a drain started: their new handshakes are refused from then on.
_draining: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
# Connections a drain waits for, and the future their end resolves. Empty outside a drain.
_watched: dict[Connection, asyncio.Future[None]] = {}


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What :func:`drain` did.

    Attributes:
        connections: live connections when the drain started.
        closed: connections the drain closed (with 1001 by default); the others closed
            themselves meanwhile, or were still in their handshake at the deadline.
        remaining: connections whose application had not returned at the deadline.
        seconds: how long the drain took.
    """

    connections: int
    closed: int
    remaining: int
    seconds: float


def draining(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """True once :func:`drain` started on ``loop`` (default: the running loop)."""
    return bool(_draining) and (loop or asyncio.get_running_loop()) in _draining


def left(conn: Connection) -> None:
    """The application of ``conn`` returned (called by the connection itself)."""
    LIVE.discard(conn)
    if _watched:
        future = _watched.pop(conn, None)
        if future is not None and not future.done():
            future.set_result(None)


async def refuse(scope: Scope, send: Send) -> None:
    """Refuse a handshake that arrived during a drain: HTTP 503 ``server shutting down``."""
    await deny(scope, send, REFUSAL_STATUS, REFUSAL_REASON, refused_by="asgi_ws drain")


async def drain(
    timeout: float = DRAIN_TIMEOUT, *, code: int = CloseCode.GOING_AWAY, reason: str = "going away"
) -> DrainReport:
    """Drain the asgi_ws connections of the running event loop; see the module docstring.

    Args:
        timeout: seconds for the whole drain: flushing backlogs, the applications' clean-up
            and the sessions' last store writes. What is left at the deadline is left to the
            server's own shutdown (uvicorn closes it with 1012).
        code: the close code (1001 "going away": clients reconnect at once, elsewhere).
        reason: the close reason.

    New handshakes on this loop stay refused after the drain returns: the process is
    shutting down.
    """
    check_close_code(code, "code")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + max(0.0, timeout)
    _draining.add(loop)
    connections = [conn for conn in LIVE if conn._loop is loop]
    ends: list[asyncio.Future[None]] = []
    for conn in connections:
        future = _watched.get(conn)  # a drain already running waits for it too
        if future is None:
            future = _watched[conn] = loop.create_future()
        ends.append(future)
    closed = 0
    closers: list[asyncio.Task[bool]] = []
    for conn in connections:
        if conn.accepted and not conn.outbound.backlogged:
            closed += _close(conn, code, reason)
        else:
            closers.append(loop.create_task(_flush_then_close(conn, deadline, code, reason)))
    try:
        pending: set[asyncio.Future[None]] = {end for end in ends if not end.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        await _background_work(loop, deadline)
    finally:
        for conn, future in zip(connections, ends, strict=True):
            if _watched.get(conn) is future and future.done():
                del _watched[conn]
        for closer in closers:
            closer.cancel()
    closed += sum(1 for closer in closers if closer.done() and not closer.cancelled() and closer.result())
    report = DrainReport(len(connections), closed, len(pending), loop.time() - started)
    if connections:
        logger.info(
            "drained %d connection(s) in %.2f s: %d closed with %d, %d still open at the deadline",
            report.connections,
            report.seconds,
            report.closed,
            code,
            report.remaining,
        )
    return report


def _close(conn: Connection, code: int, reason: str) -> bool:
    if conn.ended or conn.closing or conn.app_closed:
        return False
    conn.close(code, reason)
    return True


async def _flush_then_close(conn: Connection, deadline: float, code: int, reason: str) -> bool:
    """Wait for ``conn``'s accept (if still in its handshake) and its backlog, then close it."""
    loop = asyncio.get_running_loop()
    if not conn.accepted:
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        conn.on_accept(wake)
        conn.on_end(wake)
        await asyncio.wait({ready}, timeout=max(0.0, deadline - loop.time()))
        if not conn.accepted:
            return False  # refused, or still in its handshake: the server's shutdown answers it
    if conn.outbound.backlogged:
        await conn.outbound.flush(max(0.0, deadline - loop.time()))
    return _close(conn, code, reason)


async def _background_work(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Wait for the library's fire-and-forget work of this loop: a resumable session's end
    stores its last frames and keeps it in the store (:func:`asgi_ws._background.running`)."""
    while True:
        running = _background.running(loop)
        remaining = deadline - loop.time()
        if not running or remaining <= 0:
            return
        await asyncio.wait(running, timeout=remaining)


__all__ = [
    "DRAIN_TIMEOUT",
    "LIVE",
    "REFUSAL_REASON",
    "REFUSAL_STATUS",
    "DrainReport",
    "drain",
    "draining",
    "left",
    "refuse",
]
