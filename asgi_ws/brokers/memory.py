"""``memory://``: the embedded broker of a single process, and the reference implementation.

Delivery is synchronous (``publish`` calls ``deliver`` before returning): with one process
there is nobody else to reach, so no queue, no task, no copy. ``memory://?history=N`` keeps
the last N messages of each channel, with positions (:mod:`asgi_ws.brokers.history`).
"""

from __future__ import annotations

import collections
import itertools
import time
from urllib.parse import parse_qsl, urlsplit

from ..exceptions import BrokerClosed, ConfigurationError
from .base import START, Broker, Deliver, OnEvent, check_channel, position_key
from .history import after_history, position


class _Kept:
    """A channel's history: its epoch, the number of its newest message, the messages kept."""

    __slots__ = ("entries", "epoch", "number")

    def __init__(self, epoch: int, size: int) -> None:
        self.epoch = epoch
        self.number = 0
        self.entries: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=size)


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
        self._history: dict[str, _Kept] = {}

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
        kept = self._history.get(channel)
        if kept is None:  # the channel's history starts: its epoch is now, in milliseconds
            kept = self._history[channel] = _Kept(int(time.time() * 1000), self.history_size)
        kept.number += 1
        at = position(kept.epoch, kept.number)
        kept.entries.append((at, payload))
        if channel in self._channels:
            deliver(channel, payload, at)
        return at

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        if not self.history_size:
            return await super().history(channel, after)
        self._check()
        kept = self._history.get(channel)
        if kept is None:
            return []
        entries = kept.entries
        if not entries:
            return []
        epoch, first = position_key(entries[0][0])
        after_epoch, after_number = position_key(after)
        start = 0 if after_epoch < epoch else max(0, after_number + 1 - first)  # positions are consecutive
        return after_history(after, entries[0][0], list(itertools.islice(entries, start, None)))

    async def last_position(self, channel: str) -> str:
        if not self.history_size:
            return await super().last_position(channel)
        kept = self._history.get(channel)
        return position(kept.epoch, kept.number) if kept is not None else START

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
