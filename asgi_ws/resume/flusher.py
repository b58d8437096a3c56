"""One writer of session frames to the store for all the sessions of a middleware.

A message that must be stored before it is sent (an application's frame, the first of a room
run) may reach thousands of sessions at once; storing each session's with a store call of its
own (a task and a Redis round trip each) made a broadcast 20 times slower than without
resumption. Sessions with entries to store mark themselves here instead, and one task stores
every marked session's batch in one :meth:`~asgi_ws.resume.SessionStore.write_many` (a single
Redis pipeline), then gives each session its result. While it waits, new entries accumulate
for the next round, so the cost per message falls as the load grows.

Whatever goes wrong with one session (its batch cannot be taken, the store fails its append,
settling or handing over raises) is that session's alone: the round goes on for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..close_codes import CloseCode

if TYPE_CHECKING:
    from .numbering import Numbering as Session
    from .numbering import _Batch
    from .stores.base import SessionStore

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

    def _start_round(self) -> tuple[list[tuple[Session, _Batch]], asyncio.Task[Sequence[_Result]]] | None:
        """Take the marked sessions' batches and start storing them, or None when nothing is pending."""
        while self._dirty:
            sessions, self._dirty = list(self._dirty), {}
            taken = [(session, batch) for session in sessions if (batch := _take(session)) is not None]
            if taken:
                writes = [batch.write for _, batch in taken]
                return taken, asyncio.get_running_loop().create_task(self.store.write_many(writes))
        return None

    async def _run(self) -> None:
        """Rounds: await the store, settle each session, start the next round's store call, then
        hand the stored frames to the sockets while that call travels."""
        round_ = self._start_round()
        try:
            while round_ is not None:
                taken, storing = round_
                try:
                    results: list[_Result] = list(await storing)
                except Exception as exc:  # the store's own errors (redis-py, OSError)
                    results = [exc] * len(taken)
                handovers = []
                for (session, batch), result in zip(taken, results, strict=True):
                    try:
                        messages = session.stored_batch(batch, result)
                    except Exception:  # one session's bug must not stop the others' frames
                        logger.exception("session %s: settling stored frames failed", session.id)
                        continue
                    if messages:
                        handovers.append((session, messages))
                round_ = self._start_round()
                if round_ is not None:
                    await asyncio.sleep(0)  # let the next store call write its command
                for session, messages in handovers:
                    try:
                        session.hand_over(messages)
                    except Exception:
                        logger.exception("session %s: handing stored frames over failed", session.id)
                if round_ is None:
                    round_ = self._start_round()  # frames numbered during the hand-overs
        finally:
            if round_ is not None and not round_[1].done():
                round_[1].cancel()
            self._task = None
            if self._dirty:  # marked while we were finishing (cancellation aside)
                self._task = asyncio.get_running_loop().create_task(self._run())


#: One append's outcome: stored, refused (False: taken over; None: lost), or its error.
_Result = bool | BaseException | None


def _take(session: Session) -> _Batch | None:
    """``session.take()``; a session whose batch cannot be taken is closed, alone (1011)."""
    try:
        return session.take()
    except Exception:
        logger.exception("session %s: taking its frames for the store failed: closing", session.id)
        session._give_up(CloseCode.INTERNAL_ERROR, "internal error")
        return None


__all__ = ["SessionFlusher"]
