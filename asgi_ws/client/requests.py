"""Requests awaiting the server's answer: ``subscribe``, ``unsubscribe``, ``publish``.

The server answers a connection's control messages in the order it received them, and its
``error`` messages name the operation (``ref``), not the request: so an error is matched with
the oldest request of that kind still in flight on the connection. A request waits across
reconnections (a subscription is restored), except a publish in flight when the connection
drops: it may or may not have happened, and is not re-sent (:class:`RequestInterrupted`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal

from .exceptions import RequestInterrupted, RequestRefused

Op = Literal["subscribe", "unsubscribe", "publish"]
OPS: tuple[Op, ...] = ("subscribe", "unsubscribe", "publish")


class Requests:
    """Futures waiting for answers, keyed by ``(op, channel or publish id)``, and what is in flight per op."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, object], list[asyncio.Future[dict[str, Any]]]] = {}
        #: What the current connection sent and the server did not answer yet, oldest first.
        self.inflight: dict[str, deque[object]] = {op: deque() for op in OPS}

    def wait_for(self, op: Op, key: object) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the answer to ``op`` for ``key`` (or failed with why there is none)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((op, key), []).append(future)
        return future

    def forget(self, op: Op, key: object) -> None:
        """Drop the waiters of a request that was never sent; cancel them."""
        for future in self._waiters.pop((op, key), ()):
            future.cancel()

    def sent(self, op: Op, key: object) -> None:
        self.inflight[op].append(key)

    def unsent(self, op: Op, key: object) -> None:
        """The request could not be written after all: it waits for the next connection."""
        if key in self.inflight[op]:
            self.inflight[op].remove(key)

    def answered(self, op: Op, key: object, message: dict[str, Any]) -> None:
        if key in self.inflight[op]:
            self.inflight[op].remove(key)
        self.resolve(op, key, message)

    def refused(self, ref: object, code: str, message: str) -> object | None:
        """An ``error`` about ``ref``: fail the oldest request of that kind in flight; return its key (None: none)."""
        inflight = self.inflight.get(ref) if isinstance(ref, str) else None
        if not inflight:
            return None
        key = inflight.popleft()
        self.fail(str(ref), key, RequestRefused(code, message, str(ref)))
        return key

    def resolve(self, op: str, key: object, message: dict[str, Any]) -> None:
        for future in self._waiters.pop((op, key), ()):
            if not future.done():
                future.set_result(message)

    def fail(self, op: str, key: object, exc: BaseException) -> None:
        for future in self._waiters.pop((op, key), ()):
            if not future.done():
                future.set_exception(exc)

    def connection_started(self) -> None:
        for inflight in self.inflight.values():
            inflight.clear()

    def connection_ended(self) -> None:
        """Publishes in flight are interrupted; unsubscribes are done (nothing to undo on the next connection)."""
        publishes = self.inflight["publish"]
        while publishes:
            exc = RequestInterrupted("the connection dropped before the server confirmed the publish")
            self.fail("publish", publishes.popleft(), exc)
        for op, key in [k for k in self._waiters if k[0] == "unsubscribe"]:
            self.resolve(op, key, {"$ws": "unsubscribed", "channel": key})

    def fail_all(self, exc: BaseException) -> None:
        for op, key in list(self._waiters):
            self.fail(op, key, exc)


__all__ = ["OPS", "Op", "Requests"]
