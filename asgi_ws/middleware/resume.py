"""ResumeMiddleware: a client that reconnects within the window misses nothing and gets nothing twice.

A client opts in at the handshake with the query parameter ``ws_resume``: ``new`` starts a
resumable session, ``<token>`` with ``ws_seq=<n>`` (the data frames it has received) resumes
one. Plain clients pass through untouched. The protocol is in ``docs/protocol.md`` §9 and the
guarantees in ``docs/resume.md``.

Resuming happens after the handshake middlewares outside this one have accepted the new
connection: a user whose credentials expired or were revoked is refused there; one who
authenticates as somebody else is refused here (``identity_mismatch``).

Each opted-in connection's session, from its handshake to its end, is a
:class:`~asgi_ws.resume.handshake.SessionHandshake`.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Sequence

from .._scope import query_param
from ..connection import attach_session
from ..delivery import RoomsLike
from ..exceptions import ConfigurationError
from ..log import redact_server_logs
from ..outbound import QueueLimits
from ..resume.flusher import SessionFlusher
from ..resume.handshake import RESUME_PARAM, SEQ_PARAM, SessionHandshake, ack
from ..resume.session import Session, SessionLimits
from ..resume.stores import store_from_url
from ..resume.stores.base import SessionStore
from ..resume.tokens import TokenSigner
from ..types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("asgi_ws.resume")


class ResumeMiddleware:
    """Number every outbound message of opted-in sessions, store it, replay what a client missed.

    Args:
        app: the ASGI application to wrap.
        secret_keys: keys signing resume tokens, oldest first (sign with the last, accept any).
        store: a :class:`~asgi_ws.resume.SessionStore` or a URL: ``memory://`` (default; one
            process) or ``redis://...`` (shared by every worker process).
        window: seconds a disconnected session can be resumed (and a token's lifetime).
        max_messages: unacknowledged messages kept per session at most; older ones are
            trimmed, and a client that still needed them gets ``gap_too_old``.
        max_bytes: the same bound in bytes of payload.
        max_pending: messages numbered but not yet stored beyond which the app's ``send`` waits.
        rooms: the :class:`~asgi_ws.Rooms` whose memberships a resumed session gets back.
        salt: itsdangerous salt of the tokens.
        queue_limits: outbound queue of connections that have none (no BackpressureMiddleware).
            A stored message is never dropped, so a session's queue policy is always ``block``
            falling back to ``close`` (1013, after which the client resumes), also when a
            BackpressureMiddleware chose another.
        redact_logs: mask the resume token (``ws_resume``) in uvicorn's log lines, from
            construction on (:func:`asgi_ws.log.redact_server_logs`). False leaves the server's
            logging alone.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_keys: Sequence[str | bytes],
        store: str | SessionStore = "memory://",
        window: float = 120.0,
        max_messages: int = 10_000,
        max_bytes: int = 8 * 1024 * 1024,
        max_pending: int = 1_000,
        rooms: RoomsLike | None = None,
        salt: str = "asgi_ws.resume",
        queue_limits: QueueLimits | None = None,
        redact_logs: bool = True,
    ) -> None:
        if window <= 0 or max_messages < 1 or max_bytes < 1 or max_pending < 1:
            raise ConfigurationError("window, max_messages, max_bytes and max_pending must be positive")
        self.app = app
        self.store = store_from_url(store) if isinstance(store, str) else store
        #: Stores the frames of all this middleware's sessions, one store call a round.
        self.flusher = SessionFlusher(self.store)
        self.signer = TokenSigner(secret_keys, salt=salt, max_age=window)
        self.limits = SessionLimits(window, max_messages, max_bytes, max_pending)
        self.rooms = rooms
        self._blocking: dict[QueueLimits, QueueLimits] = {}  # limits -> their blocking twin
        self.queue_limits = self.blocking(
            queue_limits or QueueLimits(max_messages=1000, max_bytes=4 * 1024 * 1024, policy="block")
        )
        #: This process's live sessions, by id: a resume here closes the old socket at once.
        self.live: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        #: Counters (exported by :class:`~asgi_ws.metrics.AsgiWsCollector`).
        self.stats = {"created": 0, "resumed": 0, "refused": 0, "replayed": 0}
        self.refused_by_code: dict[str, int] = {}
        if redact_logs:
            redact_server_logs([RESUME_PARAM])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        request = query_param(scope, RESUME_PARAM)
        if request is None:
            await self.app(scope, receive, send)
            return
        scope, conn, receive, send = attach_session(scope, receive, send)
        conn.control.register("ack", ack)
        handler = SessionHandshake(self, conn, request, query_param(scope, SEQ_PARAM))
        await conn.run(self.app, scope, handler.receive(receive), handler.send(send))

    def blocking(self, limits: QueueLimits) -> QueueLimits:
        """``limits`` with the ``block`` policy (falling back to ``close``): stored frames are never dropped."""
        if limits.policy == "block" and limits.fallback == "close":
            return limits
        found = self._blocking.get(limits)
        if found is None:
            found = dataclasses.replace(limits, policy="block", fallback="close")
            if len(self._blocking) < 64:  # one per BackpressureMiddleware configuration in practice
                self._blocking[limits] = found
        return found

    async def close(self) -> None:
        """Release the store's connections (call at shutdown)."""
        await self.store.close()


__all__ = ["RESUME_PARAM", "SEQ_PARAM", "ResumeMiddleware"]
