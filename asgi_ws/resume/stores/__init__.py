"""Where resumable sessions are kept, chosen by URL as brokers are: ``memory://`` (one process)
or ``redis://`` / ``rediss://`` (shared by every worker process; the ``redis`` extra).

=====================  ===========================================  ===========================
URL                    store                                        install
=====================  ===========================================  ===========================
``memory://``          :class:`MemorySessionStore`                  built in
``redis://...``        :class:`~asgi_ws.resume.RedisSessionStore`   ``pip install 'asgi-ws[redis]'``
=====================  ===========================================  ===========================
"""

from __future__ import annotations

from ...exceptions import ConfigurationError, MissingDependencyError
from .base import SessionState, SessionStore
from .memory import MemorySessionStore


def store_from_url(url: str) -> SessionStore:
    """The session store of ``url``: ``memory://`` or ``redis://...`` (``rediss://``).

    Raises:
        ConfigurationError: an unknown scheme.
        MissingDependencyError: redis-py is not installed.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemorySessionStore()
    if scheme in ("redis", "rediss"):
        try:
            from .redis import RedisSessionStore
        except ImportError as exc:  # redis-py missing
            raise MissingDependencyError(
                f"the {scheme}:// session store needs redis-py: pip install 'asgi-ws[redis]'"
            ) from exc
        return RedisSessionStore(url)
    raise ConfigurationError(f"unknown session store URL scheme {scheme!r}: use memory:// or redis://")


__all__ = ["MemorySessionStore", "SessionState", "SessionStore", "store_from_url"]
