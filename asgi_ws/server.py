"""uvicorn with a drain: asgi_ws connections are flushed and closed with 1001 before uvicorn stops.

uvicorn's own shutdown (on SIGTERM/SIGINT) closes its listeners, then writes close 1012 on
every WebSocket at once and closes the transport: what waits in an outbound queue is lost,
and the lifespan shutdown, the application's only hook, comes after. :class:`Server` runs
:func:`asgi_ws.drain.drain` first, while the listeners are still open (so a handshake
arriving meanwhile gets 503, which a load balancer or a client retries elsewhere), then
uvicorn's shutdown, which finds nothing left to close. ``asgi-ws serve`` runs this server.

    from asgi_ws.server import run

    run(app, host="0.0.0.0", port=8000, drain_timeout=10)  # uvicorn.run's options

``docs/shutdown.md`` has the sequence, and what a plain ``uvicorn app:app`` gets instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

try:
    import uvicorn
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    from .exceptions import MissingDependencyError

    raise MissingDependencyError("asgi_ws.server needs uvicorn: pip install 'asgi-ws[server]'") from exc

from .connection import COUNTS
from .drain import DRAIN_TIMEOUT, DrainReport, drain
from .exceptions import ConfigurationError

logger = logging.getLogger("asgi_ws.drain")


class CollectorPolicy:
    """When the cyclic garbage collector runs in a server process that holds many connections.

    Python's collector runs a full collection once the objects that survived the young
    generations since the last one reach a quarter of all long-lived objects. An idle
    WebSocket server promotes objects with every message it handles (each ``await receive()``
    leaves a new coroutine chain and future waiting for the next message, a heartbeat a new
    timer), so with 10,000 connections pinged every 4 s a full collection came every ~10 s and
    took ~1.6 s: most of the heartbeat's CPU, and a pause of the event loop each time, for
    nothing (those objects are freed by their reference counts; the collections found no
    garbage). This policy keeps the young collections (with a larger first threshold) and
    runs the full one by connection churn instead: once the connections closed since the last
    one reach ``churn`` of the open ones (at least ``min_closed``), or every ``period``
    seconds while any closed at all. The objects of start-up are frozen out of collections
    (:func:`gc.freeze`). Cyclic garbage that outlives the young generations (mostly closed
    connections) waits for the next full collection: memory bounded by the churn threshold.

    ``asgi-ws serve`` installs it (``--gc python`` keeps Python's own thresholds).
    """

    def __init__(
        self,
        *,
        young: int = 10_000,
        churn: float = 0.25,
        min_closed: int = 1000,
        period: float = 600.0,
        check_every: float = 2.0,
    ) -> None:
        self.young = young
        self.churn = churn
        self.min_closed = min_closed
        self.period = period
        self.check_every = check_every
        #: Full collections this policy ran, and their seconds in all.
        self.collections = 0
        self.seconds = 0.0
        self._closed_at = 0
        self._collected_at = 0.0
        self._saved: tuple[int, int, int] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Freeze what start-up made, take the full collections over, start checking."""
        gc.collect()
        gc.freeze()
        self._saved = gc.get_threshold()
        # The third threshold counts second-generation collections: never reached, no
        # automatic full collection; check() runs them.
        gc.set_threshold(self.young, self._saved[1], _NEVER)
        self._closed_at = _closed()
        self._collected_at = loop.time()
        self._handle = loop.call_later(self.check_every, self._tick, loop)

    def uninstall(self) -> None:
        """Back to Python's thresholds (the frozen objects stay frozen)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = loop.call_later(self.check_every, self._tick, loop)
        self.check(loop.time())

    def due(self, now: float, closed: int, open_now: int) -> bool:
        """Whether a full collection is due: ``closed`` connections since the last one, ``open_now`` open."""
        if closed >= max(self.min_closed, self.churn * open_now):
            return True
        return closed > 0 and now - self._collected_at >= self.period

    def check(self, now: float) -> bool:
        """Run a full collection if one is due; return whether it ran."""
        closed = _closed()
        if not self.due(now, closed - self._closed_at, COUNTS.open):
            return False
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self.collections += 1
        self.seconds += took
        gc_logger.debug(
            "full garbage collection after %d closed connections (%d open): %d objects freed in %.3f s",
            closed - self._closed_at,
            COUNTS.open,
            found,
            took,
        )
        self._closed_at, self._collected_at = closed, now
        return True


#: A second-generation count no process reaches.
_NEVER = 2**31 - 1
gc_logger = logging.getLogger("asgi_ws.server")


def _closed() -> int:
    return COUNTS.total - COUNTS.open


class Server(uvicorn.Server):
    """``uvicorn.Server`` that drains asgi_ws connections before uvicorn's own shutdown.

    Args:
        config: the ``uvicorn.Config``.
        drain_timeout: seconds the drain may take (flushing, the applications' clean-up,
            the sessions' last store writes); what is left then gets uvicorn's 1012.
        before_startup: awaited on the server's event loop before uvicorn starts (before it logs,
            runs the lifespan or listens); an exception it raises ends ``serve()`` with it,
            so what cannot start (a broker that cannot be reached) fails before uvicorn's
            lifespan failure path. ``asgi-ws serve`` connects its broker here.
        collector: a :class:`CollectorPolicy` installed once the server starts (None:
            Python's own collector thresholds).

    A second Ctrl+C (uvicorn's forced exit) cuts the drain short. After a drained shutdown the
    process exits normally (status 0): uvicorn would re-raise the signal it caught, so that
    the process died of it (status 143 for SIGTERM) even after a clean shutdown.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain_timeout: float = DRAIN_TIMEOUT,
        before_startup: Callable[[], Awaitable[object]] | None = None,
        collector: CollectorPolicy | None = None,
    ) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.before_startup = before_startup
        self.collector = collector
        #: The drain's report, once it ran.
        self.drained: DrainReport | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.before_startup is not None:
            await self.before_startup()
        if self.collector is not None:
            self.collector.install(asyncio.get_running_loop())
        try:
            await super().serve(sockets=sockets)
        finally:
            if self.collector is not None:
                self.collector.uninstall()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if not self.force_exit:
            try:
                self.drained = await self._drain()
            except Exception:  # the server must stop all the same: uvicorn closes what is left
                logger.exception("the drain failed; uvicorn's shutdown closes the connections left")
        await super().shutdown(sockets=sockets)

    async def _drain(self) -> DrainReport | None:
        task = asyncio.get_running_loop().create_task(drain(self.drain_timeout))
        while not task.done():
            await asyncio.wait({task}, timeout=0.1)
            if self.force_exit:  # Ctrl+C again: stop draining, let uvicorn close what is left
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            if self.drained is not None and not self.force_exit:
                # A drained shutdown is a clean exit: do not let uvicorn re-raise the signal.
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()


def run(
    app: Any,
    *,
    drain_timeout: float = DRAIN_TIMEOUT,
    before_startup: Callable[[], Awaitable[object]] | None = None,
    collector: CollectorPolicy | None = None,
    sockets: list[socket.socket] | None = None,
    **options: Any,
) -> Server:
    """Serve ``app`` like ``uvicorn.run(app, **options)``, draining at shutdown; returns the server.

    One process: ``workers`` and ``reload`` are refused (run one such process per worker,
    each drains its own connections: ``asgi-ws serve --workers N`` does, on one listening
    socket given as ``sockets``). ``before_startup``: see :class:`Server`; what it raises, this raises.
    """
    if options.get("reload") or (options.get("workers") or 1) != 1:
        raise ConfigurationError("asgi_ws.server.run serves one process: no workers=/reload=")
    server = Server(
        uvicorn.Config(app, **options), drain_timeout=drain_timeout, before_startup=before_startup, collector=collector
    )
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run(sockets=sockets)
    return server


__all__ = ["CollectorPolicy", "Server", "run"]
