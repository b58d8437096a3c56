"""``memory://``: the embedded broker of a single process, and the reference implementation.

Delivery is synchronous (``publish`` calls ``deliver`` before returning): with one process
there is nobody else to reach, so no queue, no task, no copy. ``memory://?history=N`` keeps
the last N messages of each channel for session resumption.
"""

from __future__ import annotations

import collections
from urllib.parse import parse_qsl, urlsplit

from ..exceptions import BrokerClosed, ConfigurationError
from .base import START, Broker, Deliver, OnEvent, check_channel, position_key


class MemoryBroker(Broker):
    """In-process broker: ``memory://`` (``?history=N`` to keep N messages per channel).

    Brokers with the same URL do not share anything: each instance is its own world (use one
    Rooms instance per process).
    """

    schemes = ("memory",)

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        options = dict(parse_qsl(urlsplit(url).query))
        try:
            self.history_size = int(options.get("history", "0"))
            if self.history_size < 0:
                raise ValueError
        except ValueError:
            raise ConfigurationError(f"invalid memory broker URL {url}: history is a number of messages >= 0") from None
        self._deliver: Deliver | None = None
        self._channels: set[str] = set()
        self._closed = False
        # channel -> (number of the newest message, the kept (position, payload) pairs)
        self._history: dict[str, tuple[int, collections.deque[tuple[str, bytes]]]] = {}

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        if self._closed:
            raise BrokerClosed("this broker was closed")
        self._deliver = deliver

    async def close(self) -> None:
        self._closed = True
        self._channels.clear()
        self._history.clear()
        self._deliver = None

    def _check(self) -> Deliver:
        if self._closed or self._deliver is None:
            raise BrokerClosed("the broker is closed" if self._closed else "the broker is not connected")
        return self._deliver

    async def publish(self, channel: str, payload: bytes) -> str | None:
        deliver = self._check()
        check_channel(channel)
        if not self.history_size:
            if channel in self._channels:
                deliver(channel, payload)
            return None
        number, kept = self._history.get(channel) or (0, collections.deque(maxlen=self.history_size))
        position = f"0-{number + 1}"
        kept.append((position, payload))
        self._history[channel] = (number + 1, kept)
        if channel in self._channels:
            deliver(channel, payload, position)
        return position

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        if not self.history_size:
            return await super().history(channel, after)
        self._check()
        _, kept = self._history.get(channel) or (0, collections.deque())
        after_number = position_key(after)[1]
        if not kept:
            return []
        oldest = position_key(kept[0][0])[1]
        if after_number < oldest - 1:
            return None  # messages after `after` were trimmed
        return [entry for entry in kept if position_key(entry[0])[1] > after_number]

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        number = self._history.get(channel, (0, None))[0]
        return f"0-{number}" if number else START

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
