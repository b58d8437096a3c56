"""One writer of session frames to the store for all the sessions of a middleware.

A broadcast to 5,000 resumable members numbers one frame in each of 5,000 sessions; storing
them with one store call per session (a task and a Redis round trip each) made such a
broadcast 20 times slower than without resumption. Sessions with pending frames mark
themselves here instead, and one task stores every marked session's batch in one
:meth:`~asgi_ws.resume.SessionStore.append_many` (a single Redis pipeline), then gives each
session its result. While it waits, new frames accumulate for the next round, so the cost per
frame falls as the load grows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session
    from .store import SessionStore

logger = logging.getLogger("asgi_ws.resume")


class SessionFlusher:
    """Stores the pending frames of many sessions in rounds, one store call per round."""

    __slots__ = ("_dirty", "_task", "store")

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self._dirty: dict[Session, None] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, session: Session) -> None:
        """``session`` has frames to store."""
        self._dirty[session] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._dirty:
                sessions, self._dirty = list(self._dirty), {}
                batches = [(session, session.take()) for session in sessions]
                taken = [(session, batch) for session, batch in batches if batch is not None]
                if not taken:
                    continue
                try:
                    results: list[bool | BaseException] = list(
                        await self.store.append_many([batch.append for _, batch in taken])
                    )
                except Exception as exc:  # the store's own errors (redis-py, OSError)
                    results = [exc] * len(taken)
                for (session, batch), result in zip(taken, results, strict=True):
                    try:
                        session.stored_batch(batch, result)
                    except Exception:  # one session's bug must not stop the others' frames
                        logger.exception("session %s: handing stored frames over failed", session.id)
        finally:
            self._task = None
            if self._dirty:  # marked while we were finishing (cancellation aside)
                self._task = asyncio.get_running_loop().create_task(self._run())


__all__ = ["SessionFlusher"]
