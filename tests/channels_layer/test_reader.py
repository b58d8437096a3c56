"""``BrokerChannelLayer.reader``: a consumer reading its own channel's buffer directly (what
LeanDispatchMixin consumers do) keeps what ``receive()`` keeps: per-channel order, capacity,
expiry, nothing lost when the reader goes away, BrokerClosed when the layer closes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.exceptions import ChannelFull

from asgi_ws.contrib.channels import BrokerChannelLayer
from asgi_ws.exceptions import BrokerClosed
from tests.channels_layer.conftest import MakeLayer
from tests.channels_layer.helpers import FakeClock, buffered, eventually, received, settled


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def drain(reader: Any) -> list[dict[str, Any]]:
    out = []
    while (message := reader.take()) is not None:
        out.append(message)
    return out


async def test_messages_in_order_and_a_call_per_message() -> None:
    layer = BrokerChannelLayer()
    try:
        channel = await layer.new_channel()
        calls = Calls()
        reader = layer.reader(channel, calls)
        assert reader is not None and reader.take() is None and not reader.ready()
        await layer.group_add("g", channel)
        for i in range(5):
            await layer.send(channel, {"type": "direct", "i": i})
            await layer.group_send("g", {"type": "group", "i": i})
        assert calls.count == 10 and reader.ready()
        got = drain(reader)
        assert [(m["type"], m["i"]) for m in got] == [(t, i) for i in range(5) for t in ("direct", "group")]
        got[0]["i"] = "changed"  # each reader decodes its own copy
        reader.close()
    finally:
        await layer.close()


async def test_where_a_reader_cannot_be_had(make_layer: MakeLayer) -> None:
    layer, other = make_layer(), make_layer()
    assert layer.reader("specific.x!y", Calls()) is None  # not connected on this loop yet
    channel = await layer.new_channel()
    foreign = await other.new_channel()
    assert layer.reader(foreign, Calls()) is None  # another layer's (process's) channel
    assert layer.reader("general-name", Calls()) is None  # general names: receive()
    reader = layer.reader(channel, Calls())
    assert reader is not None
    with pytest.raises(RuntimeError, match="already has a reader"):
        layer.reader(channel, Calls())
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(asyncio.run(_reader_in_new_loop(layer, channel))))
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert seen == [None]  # another event loop than the layer's
    reader.close()
    assert layer.reader(channel, Calls()) is not None  # closed: the channel can be read again


async def _reader_in_new_loop(layer: BrokerChannelLayer, channel: str) -> Any:
    return layer.reader(channel, Calls())


async def test_closing_a_reader_leaves_the_rest_to_receive() -> None:
    layer = BrokerChannelLayer()
    try:
        channel = await layer.new_channel()
        reader = layer.reader(channel, Calls())
        assert reader is not None
        for i in range(4):
            await layer.send(channel, {"type": "m", "i": i})
        assert reader.take() == {"type": "m", "i": 0}
        reader.close()  # a consumer that stops here takes nothing more
        assert [(await received(layer, channel, f"message {i}"))["i"] for i in (1, 2, 3)] == [1, 2, 3]
        core = layer._cores[asyncio.get_running_loop()]
        assert channel not in core.inboxes  # empty, in no group, no reader: forgotten
    finally:
        await layer.close()


async def test_capacity_with_a_reader() -> None:
    layer = BrokerChannelLayer(capacity=2)
    try:
        channel = await layer.new_channel()
        reader = layer.reader(channel, Calls())
        assert reader is not None
        await layer.group_add("g", channel)
        await layer.send(channel, {"type": "m", "i": 0})
        await layer.send(channel, {"type": "m", "i": 1})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "m", "i": 2})
        await layer.group_send("g", {"type": "m", "i": 3})  # dropped and counted, never raised
        assert layer.stats.dropped_full == 1
        assert [m["i"] for m in drain(reader)] == [0, 1]
        await layer.send(channel, {"type": "m", "i": 4})
        assert [m["i"] for m in drain(reader)] == [4]
    finally:
        await layer.close()


async def test_expired_messages_are_not_taken_and_the_channel_leaves_its_groups() -> None:
    clock = FakeClock()
    layer = BrokerChannelLayer(expiry=10)
    layer._clock = clock
    try:
        channel = await layer.new_channel()
        reader = layer.reader(channel, Calls())
        assert reader is not None
        await layer.group_add("g", channel)
        await layer.send(channel, {"type": "old"})
        clock.advance(11)
        await layer.send(channel, {"type": "new"})
        assert drain(reader) == [{"type": "new"}]
        assert layer.stats.expired == 1
        core = layer._cores[asyncio.get_running_loop()]
        assert "g" not in core.groups  # an unread message expired: presumed gone, as with receive()
        assert channel in core.inboxes  # still read: kept for direct sends
    finally:
        await layer.close()


async def test_closing_the_layer_wakes_the_reader_with_broker_closed() -> None:
    layer = BrokerChannelLayer()
    channel = await layer.new_channel()
    calls = Calls()
    reader = layer.reader(channel, calls)
    assert reader is not None
    await layer.close()
    assert calls.count == 1 and reader.ready()
    with pytest.raises(BrokerClosed):
        reader.take()
    reader.close()  # after the layer closed: nothing to release, no error


async def test_another_process_sends_arrive_in_order(make_layer: MakeLayer, shared: bool) -> None:
    """Sends and group messages from another layer (process) on a shared broker reach the
    reader in the order they were sent."""
    if not shared:
        return  # memory://: no other process
    here, there = make_layer(), make_layer()
    channel = await here.new_channel()
    calls = Calls()
    reader = here.reader(channel, calls)
    assert reader is not None
    await here.group_add("g", channel)
    for i in range(30):
        await there.send(channel, {"type": "direct", "i": i})
        await there.group_send("g", {"type": "group", "i": i})
    await settled(here, sender=there)
    await eventually(lambda: buffered(here, channel) == 60, "the 60 messages from the other process")
    got = drain(reader)
    assert [m["i"] for m in got if m["type"] == "direct"] == list(range(30))
    assert [m["i"] for m in got if m["type"] == "group"] == list(range(30))
    assert calls.count == 60
    reader.close()
