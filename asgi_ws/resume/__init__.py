"""Session resumption: sessions, their stores and resume tokens (``ResumeMiddleware`` uses them).

``RedisSessionStore`` is imported lazily: it needs the ``redis`` extra.
"""

from __future__ import annotations

from typing import Any

from .session import Session as Session
from .session import session_of as session_of
from .stores import MemorySessionStore as MemorySessionStore
from .stores import store_from_url as store_from_url
from .stores.base import SessionState as SessionState
from .stores.base import SessionStore as SessionStore
from .tokens import ResumeRefused as ResumeRefused
from .tokens import TokenSigner as TokenSigner


def __getattr__(name: str) -> Any:
    if name == "RedisSessionStore":
        from .stores.redis import RedisSessionStore

        return RedisSessionStore
    raise AttributeError(name)


__all__ = [
    "MemorySessionStore",
    "RedisSessionStore",
    "ResumeRefused",
    "Session",
    "SessionState",
    "SessionStore",
    "TokenSigner",
    "session_of",
    "store_from_url",
]
