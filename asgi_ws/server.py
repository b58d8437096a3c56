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
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

try:
    import uvicorn
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    from .exceptions import MissingDependencyError

    raise MissingDependencyError("asgi_ws.server needs uvicorn: pip install 'asgi-ws[server]'") from exc

from .drain import DRAIN_TIMEOUT, DrainReport, drain
from .exceptions import ConfigurationError

logger = logging.getLogger("asgi_ws.drain")


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
    ) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.before_startup = before_startup
        #: The drain's report, once it ran.
        self.drained: DrainReport | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.before_startup is not None:
            await self.before_startup()
        await super().serve(sockets=sockets)

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
    **options: Any,
) -> Server:
    """Serve ``app`` like ``uvicorn.run(app, **options)``, draining at shutdown; returns the server.

    One process: ``workers`` and ``reload`` are refused (run one such process per worker,
    each drains its own connections). ``before_startup``: see :class:`Server`; what it raises, this raises.
    """
    if options.get("reload") or (options.get("workers") or 1) != 1:
        raise ConfigurationError("asgi_ws.server.run serves one process: no workers=/reload=")
    server = Server(uvicorn.Config(app, **options), drain_timeout=drain_timeout, before_startup=before_startup)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run()
    return server


__all__ = ["Server", "run"]
