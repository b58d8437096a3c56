"""What the channel layer tests share: a clock they move, bounded waits, a look into buffers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgi_ws.contrib.channels import BrokerChannelLayer

T = TypeVar("T")


class FakeClock:
    """The layer's expiry clock, moved by the test (no sleeping, no timed assertion)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.005)


async def within(awaitable: Awaitable[T], what: str, timeout: float = 10.0) -> T:
    """Await ``awaitable``, failing with ``what`` if it takes more than ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


async def received(layer: BrokerChannelLayer, channel: str, what: str, timeout: float = 10.0) -> dict[str, Any]:
    """``layer.receive(channel)``, failing with ``what`` if nothing comes within ``timeout`` seconds."""
    return await within(layer.receive(channel), f"{what} arriving on {channel!r}", timeout)


def buffered(layer: BrokerChannelLayer, channel: str) -> int:
    """Messages waiting in ``channel``'s buffer in ``layer`` (on this loop)."""
    core = layer._cores.get(asyncio.get_running_loop())
    inbox = core.inboxes.get(channel) if core is not None else None
    return len(inbox.items) if inbox is not None else 0


async def settled(*layers: BrokerChannelLayer, sender: BrokerChannelLayer | None = None) -> None:
    """Every broker message ``sender`` published so far has been handled by ``layers``: it
    publishes a marker to a group every layer holds a member of, and waits for each to get it
    (a broker delivers one publisher's messages in order)."""
    if sender is None:
        return
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    channels = []
    for layer in layers:
        channel = await layer.new_channel("marker")
        await layer.group_add(marker, channel)
        channels.append((layer, channel))
    await sender.group_send(marker, {"type": "marker"})
    for layer, channel in channels:
        assert (await received(layer, channel, "the marker"))["type"] == "marker"
        await layer.group_discard(marker, channel)
