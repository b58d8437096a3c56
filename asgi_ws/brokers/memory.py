"""``memory://``: the embedded broker of a single process, and the reference implementation.

Delivery is synchronous (``publish`` calls ``deliver`` before returning): with one process
there is nobody else to reach, so no queue, no task, no copy.
"""

from __future__ import annotations

from ..exceptions import BrokerClosed
from .base import Broker, Deliver, OnEvent, check_channel


class MemoryBroker(Broker):
    """In-process broker: ``memory://``. Brokers with the same URL path do not share anything:
    each instance is its own world (use one Rooms instance per process)."""

    schemes = ("memory",)

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()
        self._closed = False

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver = deliver

    async def close(self) -> None:
        self._closed = True
        self._channels.clear()
        self._deliver = None

    def _check(self) -> Deliver:
        if self._closed or self._deliver is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")
        return self._deliver

    async def publish(self, channel: str, payload: bytes) -> None:
        deliver = self._check()
        check_channel(channel)
        if channel in self._channels:
            deliver(channel, payload)

    async def subscribe(self, channel: str) -> None:
        self._check()
        check_channel(channel)
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._check()
        self._channels.discard(channel)

    async def subscription_count(self) -> int:
        return len(self._channels)


__all__ = ["MemoryBroker"]
