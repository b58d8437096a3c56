"""What runs where: asgi_ws's live-connection features run on asyncio only.

The connection shell (:mod:`asgi_ws.connection`), and so every session middleware, PubSubApp,
Rooms and a credential that expires, is built on the asyncio event loop: its tasks, its
timer heap, its loop clock. On another async library (trio, through an ASGI server running
on it or Starlette's ``TestClient(backend="trio")``) the first of them to touch a connection
raises the one clear error below instead of asyncio's ``no running event loop``. The
handshake middlewares run anywhere (AuthMiddleware's deadline uses trio's own there).
"""

from __future__ import annotations

from .exceptions import ConfigurationError


def running_library() -> str | None:
    """The async library running the current task, as ``sniffio`` names it (``"trio"``); None if unknown."""
    try:
        import sniffio  # installed with trio and with anyio: wherever another library can run

        return str(sniffio.current_async_library())
    except Exception:  # not installed, or nothing it knows runs here
        return None


def asyncio_required() -> ConfigurationError:
    """The error for a live-connection feature asked to run outside asyncio, naming what runs instead."""
    library = running_library()
    where = f"this connection runs on {library}" if library else "no asyncio event loop runs this connection"
    return ConfigurationError(
        f"asgi_ws session middlewares (and PubSubApp, Rooms, credentials that expire) need asyncio; {where}. "
        "Serve the application on an asyncio event loop (uvicorn, hypercorn's asyncio worker, daphne; "
        "Starlette's TestClient with its default backend)"
    )
