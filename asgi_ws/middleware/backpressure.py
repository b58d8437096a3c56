"""BackpressureMiddleware: one slow reader never stalls the others nor grows memory without bound.

Each connection gets a bounded outbound queue drained by one writer, so the application's
``send`` returns at once while the queue has room. While the client keeps up there is no
queue at all: messages are written straight to the socket (see :mod:`asgi_ws.outbound`);
only once a write blocks do later messages wait, and then the overflow policy decides what
happens to those that do not fit.
"""

from __future__ import annotations

from ..close_codes import CloseCode
from ..connection import attach_session, connection_of
from ..exceptions import ConfigurationError
from ..outbound import BatchLimits, KeyFunc, OutboundTotals, Policy, QueueLimits
from ..types import ASGIApp, Receive, Scope, Send


class BackpressureMiddleware:
    """Bound every connection's outbound queue and apply an overflow policy.

    Args:
        app: the ASGI application to wrap.
        max_messages: messages queued at most per connection (default 1000); None: no count limit.
        max_bytes: payload queued at most per connection, in bytes: bytes of binary and UTF-8
            bytes of text (default 1 MiB); None: no byte limit. At least one limit is required.
        policy: what happens to a message that does not fit: ``"drop_oldest"`` (default),
            ``"drop_newest"``, ``"conflate"`` (keep the newest message per key),
            ``"block"`` (the app's send waits for room, up to ``block_timeout``) or
            ``"close"`` (close the slow consumer with ``close_code``).
        block_timeout: seconds ``block`` waits before applying ``fallback`` (default 5).
        fallback: policy after a ``block`` timeout, or for a ``conflate`` message without a
            queued twin when the queue is full: ``"close"`` (default), ``"drop_oldest"``
            or ``"drop_newest"``.
        conflate_key: ``key(message) -> hashable | None`` for ``conflate``; messages with key
            None are never conflated.
        close_code: close code of the ``close`` policy (default 1013, Try Again Later).
        close_reason: close reason of the ``close`` policy (default ``"slow consumer"``).
        batch: offer batches to the clients that ask for them in ``hello`` (``True``, the
            default: :class:`~asgi_ws.outbound.BatchLimits` ``()``, 256 messages and 64 KiB a
            batch; a ``BatchLimits`` for other bounds; ``False``: never batch). A client that
            asked gets the text messages that come faster than it can take them one by one (a
            burst in one event-loop turn, or a backlog) as one batch frame
            (docs/protocol.md, "Batches"); a client that did not ask never sees one.

    A message may override the policy with an extra key, removed before it reaches the
    server: ``{"type": "websocket.send", "text": ..., "asgi_ws": {"overflow": "drop_newest"}}``,
    and give its conflation key as ``{"asgi_ws": {"overflow": "conflate", "key": "AAPL"}}``.

    Counters over every connection are in :attr:`totals`; one connection's are in
    ``connection_of(scope).outbound.stats()`` (or :func:`queue_stats`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_messages: int | None = 1000,
        max_bytes: int | None = 1_048_576,
        policy: Policy = "drop_oldest",
        block_timeout: float = 5.0,
        fallback: Policy = "close",
        conflate_key: KeyFunc | None = None,
        close_code: int = CloseCode.TRY_AGAIN_LATER,
        close_reason: str = "slow consumer",
        batch: bool | BatchLimits = True,
    ) -> None:
        if not isinstance(batch, (bool, BatchLimits)):
            raise ConfigurationError("batch must be True, False or a BatchLimits")
        self.app = app
        self.limits = QueueLimits(
            max_messages=max_messages,
            max_bytes=max_bytes,
            policy=policy,
            block_timeout=block_timeout,
            fallback=fallback,
            conflate_key=conflate_key,
            close_code=close_code,
            close_reason=close_reason,
        )
        #: Counters summed over every connection of this middleware.
        self.totals = OutboundTotals()
        limits = BatchLimits() if batch is True else batch or None
        #: What ``welcome`` announces as the ``batch`` feature (None: batches are not offered).
        self.batch_feature = limits.feature() if limits is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        scope, conn, receive, send = attach_session(scope, receive, send)
        conn.outbound.configure(self.limits, self.totals)
        if self.batch_feature is not None:
            conn.control.announce("batch", self.batch_feature)
        await conn.run(self.app, scope, receive, send)


def queue_stats(scope: Scope) -> dict[str, int] | None:
    """Return the outbound counters of the connection of ``scope`` (None outside an asgi_ws stack).

    Keys: ``queued`` (messages waiting now), ``queued_bytes``, ``sent``, ``dropped``, ``conflated``.
    """
    conn = connection_of(scope)
    return None if conn is None else conn.outbound.stats()


__all__ = ["BackpressureMiddleware", "queue_stats"]
