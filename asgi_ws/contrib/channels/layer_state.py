"""The pieces of a :class:`~asgi_ws.contrib.channels.layer_core.Core`: a group's local members,
the aggregated drop log, and broker subscriptions that follow demand (a channel's buffer, the
:class:`~asgi_ws.contrib.channels.layer_buffers.Inbox`, is in ``layer_buffers``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from ...exceptions import BrokerError

if TYPE_CHECKING:
    from .layer_buffers import Inbox
    from .layer_core import Core

logger = logging.getLogger("asgi_ws.channels")


class Group:
    """The members of a group in this process: its own channels and forwarded general names."""

    __slots__ = ("channel", "forwards", "joined", "members", "name")

    def __init__(self, name: str, channel: str) -> None:
        self.name = name
        self.channel = channel  # its broker channel
        self.members: dict[str, Inbox] = {}
        self.forwards: set[str] = set()  # general names, reached through their broker channel
        self.joined: dict[str, float] = {}  # every member -> when it joined, oldest first


class Report:
    """What the layer had to drop, counted by reason and logged in aggregate: one WARNING line
    right after a burst (one fan-out that filled a thousand channels is one line), then at most
    one per ``interval`` seconds. Never one line per message, never silent."""

    REASONS: ClassVar[dict[str, str]] = {
        "full": "over capacity (dropped)",
        "expired": "expired unread",
        "malformed": "malformed broker messages (ignored)",
        "unroutable": "sent to a channel of no process here",
        "left": "channels removed from their groups (an unread message expired, or group_expiry)",
    }

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.pending: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        self.next_at = 0.0
        self.handle: asyncio.Handle | None = None

    def add(self, reason: str, count: int, example: str) -> None:
        if count <= 0:
            return
        self.pending[reason] = self.pending.get(reason, 0) + count
        self.examples.setdefault(reason, example)
        if self.handle is None:
            delay = self.next_at - self.loop.time()
            self.handle = self.loop.call_later(delay, self.flush) if delay > 0 else self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.handle = None
        if not self.pending:
            return
        self.next_at = self.loop.time() + self.interval
        parts = [
            f"{count} {self.REASONS[reason]} (e.g. {self.examples[reason]})" for reason, count in self.pending.items()
        ]
        self.pending, self.examples = {}, {}
        logger.warning(
            "channel layer: %s; logged at most every %g s, totals in layer.stats", "; ".join(parts), self.interval
        )

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.flush()


class Subscriptions:
    """Broker subscriptions that follow what is wanted, one change at a time per channel."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.active: set[str] = set()
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def sync(self, channel: str, wanted: Callable[[], bool]) -> None:
        """Subscribe or unsubscribe ``channel`` so that it matches ``wanted()`` once this returns."""
        if channel not in self._locks and wanted() == (channel in self.active):
            return
        lock, users = self._locks.setdefault(channel, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                want = wanted()
                if want and channel not in self.active:
                    await self.core.broker.subscribe(channel)
                    self.active.add(channel)
                    await self.core.probe()
                elif not want and channel in self.active:
                    self.active.discard(channel)
                    try:
                        await self.core.broker.unsubscribe(channel)
                    except BrokerError as exc:  # nothing is delivered for it any more anyway
                        logger.warning("channel layer could not unsubscribe %r: %s", channel, exc)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[channel]


__all__ = ["Group", "Report", "Subscriptions"]
