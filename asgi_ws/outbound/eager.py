"""Writing frames by driving the server's ``send`` coroutine by hand, one write in flight at a time.

While the socket is writable, a server's data ``send`` completes without suspending: started
with ``coro.send(None)``, it raises ``StopIteration`` at once, so the frame costs no task, no
queue entry and no loop iteration (:meth:`EagerWriter._start`). The first time a write
suspends (the transport paused: the client stopped reading), the started coroutine is handed
to a writer task, which finishes it exactly as ``asyncio.Task`` would and then writes whatever
the subclass gives it next (:meth:`EagerWriter._next_frame`), one frame at a time, until
nothing is left. Abandoning a suspended write (a close) unwinds it as ``Task.cancel()`` would.

Only data frames are written this way: a server's data write must not depend on the task it
runs in, which holds for uvicorn's three implementations, hypercorn and daphne (uvicorn's
legacy implementation wraps its *close* in ``asyncio.timeout()``, which belongs to the
current task). This module knows nothing of queues or policies: :class:`~asgi_ws.outbound.Outbound`
decides what to write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..types import Message, Send

#: A frame for the writer task: the message, and how many application messages it carries
#: (0 for a control frame or the application's accept/close).
Frame = tuple[Message, int]


class EagerWriter:
    """The write side of one socket: eager writes, and a writer task once one suspends.

    Attributes:
        failed: the error that broke the connection's writes, once one did.
        sent: application messages written.
    """

    __slots__ = ("_send", "_suspended", "_writer", "failed", "sent")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._writer: asyncio.Task[None] | None = None
        #: The server's send coroutine started eagerly and suspended, until the writer finishes it.
        self._suspended: tuple[Coroutine[Any, Any, None], Any] | None = None
        self.failed: BaseException | None = None
        self.sent = 0

    # -- what the subclass decides --------------------------------------------------------------

    def _next_frame(self) -> Frame | None:
        """The next frame the writer task writes; None ends the task (nothing is waiting)."""
        raise NotImplementedError

    def _fail(self, exc: BaseException) -> None:
        """A write raised: the connection's writes are over."""
        raise NotImplementedError

    def _backlog_changed(self, started: bool) -> None:
        """A writer task started (``started``) or ended."""

    # -- writing --------------------------------------------------------------------------------

    def _start(self, message: Message, *, raise_errors: bool, count: int = 1) -> bool:
        """Write the data frame ``message`` (``count`` application messages) eagerly; if the
        write suspends, a writer task finishes it. Returns False when the write failed (and
        ``raise_errors`` is False)."""
        coro = self._send(message)
        try:
            yielded = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            self.sent += count
            return True
        except Exception as exc:
            if raise_errors:  # the application's own send: its error is its own, as from the server
                if isinstance(exc, (OSError, RuntimeError)):
                    self._fail(exc)
                raise
            # The library's messages and fan-out offers: whatever the server raised (a peer
            # gone, a protocol state error), this connection's writes are over, and no error
            # reaches the timer or the broadcast loop that asked.
            self._fail(exc)
            return False
        self._hand_to_writer(coro, yielded, count)
        return True

    def _hand_to_writer(self, coro: Any, yielded: Any, count: int) -> None:
        """A write suspended: a writer task finishes it, then writes what waits behind it."""
        if not isinstance(coro, Coroutine):  # pragma: no cover - a server whose send is not a coroutine
            raise RuntimeError("asgi_ws needs the server's send to be a coroutine")
        self._suspended = (coro, yielded)
        writer = self._writer = asyncio.get_running_loop().create_task(self._write_backlog(count))
        # Cleanup runs as a done callback: a task cancelled before its first step never runs
        # its coroutine's finally blocks.
        writer.add_done_callback(self._writer_done)
        self._backlog_changed(True)

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if self._writer is writer:
            self._writer = None
        self._backlog_changed(False)

    async def _write_backlog(self, first: int) -> None:
        try:
            await self._finish_suspended()
            self.sent += first
            while True:
                frame = self._next_frame()
                if frame is None:
                    break
                await self._send(frame[0])
                self.sent += frame[1]
            # Nothing waits: the path is free from now, not from the done callback (other
            # callbacks run in between, and what they queued would wait for the next write).
            self._writer = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nobody awaits the writer: the error ends this connection's writes
            self._fail(exc)

    async def _finish_suspended(self) -> None:
        """Finish the server's send coroutine started by hand (``coro.send(None)``) that suspended.

        This is what ``asyncio.Task`` does for a coroutine it runs: wait for the future it
        awaits, then resume it so it reads the result itself. On cancellation the write is
        abandoned the way ``Task.cancel()`` would abandon it (see :func:`abandon`), so a
        server that checks its own waiters (websockets' drain) stays consistent.
        """
        assert self._suspended is not None
        coro, yielded = self._suspended
        loop = asyncio.get_running_loop()
        try:
            while True:
                if yielded is None:  # a bare yield, as asyncio.sleep(0) does
                    await asyncio.sleep(0)
                else:
                    if not hasattr(yielded, "add_done_callback"):
                        coro.close()
                        raise RuntimeError("asgi_ws runs on asyncio servers only")
                    yielded._asyncio_future_blocking = False
                    waiter = loop.create_future()

                    def wake(_: object, waiter: asyncio.Future[None] = waiter) -> None:
                        if not waiter.done():
                            waiter.set_result(None)

                    yielded.add_done_callback(wake)
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        yielded.remove_done_callback(wake)
                        abandon(coro, yielded)
                        raise
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    return
                self._suspended = (coro, yielded)
        finally:
            self._suspended = None

    def _abandon_suspended(self) -> None:
        """Unwind the suspended write of a writer task that was cancelled before it ever ran."""
        if self._suspended is not None:
            abandon(*self._suspended)
            self._suspended = None


def abandon(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Unwind a suspended send coroutine as ``Task.cancel()`` would: cancel the future it awaits, resume it."""
    if yielded is not None and hasattr(yielded, "cancel"):
        yielded.cancel()
    try:
        coro.send(None)
    except BaseException:
        return
    coro.close()


__all__ = ["EagerWriter", "Frame", "abandon"]
