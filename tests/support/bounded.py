"""A bound on every ``await ws.recv()`` written in a test: a lost message fails, never hangs.

Tests read real WebSocket connections with the ``websockets`` client. A ``recv()`` whose
message never comes used to wait until pytest's global timeout (minutes), then fail with a
stack dump that does not say what was awaited. :func:`install` wraps
``ClientConnection.recv`` so that a call made directly from test code (a module under
``tests.``) fails after :data:`RECV_TIMEOUT` seconds with the connection and the wait named.
Calls from library code (``asgi_ws.client``'s reader, ``async for`` over a connection) are
not bounded: an idle connection there is legitimate. Waits that need a specific bound or
message use ``tests.support.clients.recv_json_until`` or ``asyncio.timeout`` themselves.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from websockets.asyncio.connection import Connection

#: Seconds a test's bare ``await ws.recv()`` may wait.
RECV_TIMEOUT = 20.0

_original_recv = Connection.recv


def _bounded_recv(self: Connection, *args: Any, **kwargs: Any) -> Any:
    caller = sys._getframe(1).f_globals.get("__name__", "")
    coro = _original_recv(self, *args, **kwargs)
    if not caller.startswith("tests."):
        return coro
    return _within(coro, self, caller)


async def _within(coro: Any, conn: Connection, caller: str) -> Any:
    try:
        async with asyncio.timeout(RECV_TIMEOUT):
            return await coro
    except TimeoutError:
        where = getattr(conn, "request", None)
        path = getattr(where, "path", "?")
        raise AssertionError(
            f"{caller}: nothing arrived on the WebSocket {path} within {RECV_TIMEOUT} s (an unbounded recv() in a test)"
        ) from None


def install() -> None:
    """Bound tests' direct ``recv()`` calls (idempotent)."""
    if Connection.recv is not _bounded_recv:
        Connection.recv = _bounded_recv  # type: ignore[method-assign,assignment]


__all__ = ["RECV_TIMEOUT", "install"]
