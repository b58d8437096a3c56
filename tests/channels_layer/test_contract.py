"""The Channels layer contract, on every broker: what Channels' in-memory layer and
channels_redis are tested for (their tests/test_inmemorychannel.py, test_core.py and
test_pubsub.py), and what they lose (cancelled receives, unbounded buffers, silent drops)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import pytest
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from tests.channels_layer.conftest import MakeLayer
from tests.channels_layer.helpers import FakeClock, buffered, eventually, received, within


async def test_send_receive_on_a_channel_of_this_process(make_layer: MakeLayer) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    message = {"type": "test.message", "text": "Ahoy-hoy!", "bytes": b"\x00\xff", "nested": {"list": [1, 2.5, None]}}
    await layer.send(channel, message)
    await layer.send(channel, {"type": "test.message", "n": 2})
    assert await received(layer, channel, "the first message") == message
    assert await received(layer, channel, "the second message") == {"type": "test.message", "n": 2}


async def test_each_receiver_gets_a_dict_of_its_own(make_layer: MakeLayer) -> None:
    layer = make_layer()
    one, two = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", one)
    await layer.group_add("g", two)
    await layer.group_send("g", {"type": "m", "items": [1]})
    first = await received(layer, one, "the group message")
    first["items"].append(2)
    assert (await received(layer, two, "the group message"))["items"] == [1]


async def test_per_channel_order_is_kept(make_layer: MakeLayer) -> None:
    layer = make_layer(capacity=500)
    channel = await layer.new_channel()
    for i in range(300):
        await layer.send(channel, {"type": "m", "i": i})
    assert [(await received(layer, channel, f"message {i}"))["i"] for i in range(300)] == list(range(300))


async def test_groups_basic(make_layer: MakeLayer) -> None:
    layer = make_layer()
    one, two, three = [await layer.new_channel(prefix=f"test-gr-chan-{i}") for i in (1, 2, 3)]
    for channel in (one, two, three):
        await layer.group_add("test-group", channel)
    await layer.group_discard("test-group", two)
    await layer.group_discard("test-group", two)  # twice: no error
    await layer.group_discard("never-added", one)
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await received(layer, one, "the group message"))["type"] == "message.1"
    assert (await received(layer, three, "the group message"))["type"] == "message.1"
    assert buffered(layer, two) == 0  # the group message is fanned out synchronously here


async def test_group_send_to_an_empty_group_is_fine(make_layer: MakeLayer) -> None:
    layer = make_layer()
    await layer.group_send("nobody", {"type": "m"})


async def test_general_channel_names(make_layer: MakeLayer, shared: bool) -> None:
    sender, worker = make_layer(), make_layer()
    if not shared:  # memory://: one process, buffered like Channels' in-memory layer, even before receive()
        await worker.send("test-channel-1", {"type": "test.message", "n": 1})
        assert (await received(worker, "test-channel-1", "a general message"))["n"] == 1
        return
    await worker.listen("thumbnails")
    other_worker = make_layer()
    await other_worker.listen("thumbnails")
    await sender.send("thumbnails", {"type": "thumbnail.make", "id": 7})
    # Every listening process gets it: pub/sub, not a work queue (docs/channels-layer.md).
    assert (await received(worker, "thumbnails", "the general message"))["id"] == 7
    assert (await received(other_worker, "thumbnails", "the general message"))["id"] == 7
    # A receive() listens by itself: the message sent after it subscribed arrives.
    task = asyncio.create_task(sender.receive("replies"))
    core = sender._cores[asyncio.get_running_loop()]
    await eventually(lambda: f"{sender.prefix}:c:replies" in core.subscriptions.active, "the receive() subscribing")
    await worker.send("replies", {"type": "reply"})
    assert (await within(task, "the reply to the listening receive()"))["type"] == "reply"


async def test_invalid_names_are_refused_as_channels_refuses_them(make_layer: MakeLayer) -> None:
    layer = make_layer()
    for bad in ("¯\\_(ツ)_/¯", "chat" * 100, "=+135!", "", "has space"):
        with pytest.raises(TypeError):
            await layer.send(bad, {"type": "m"})
        with pytest.raises(TypeError):
            await layer.group_send(bad, {"type": "m"})
        with pytest.raises(TypeError):
            await layer.group_add(bad, "ok")
    with pytest.raises(TypeError, match=re.escape(BaseChannelLayer.invalid_name_error.format("Group"))):
        await layer.group_discard("a" * 101, "ok")
    with pytest.raises(ValueError, match="new_channel"):
        await layer.receive("specific.someoneelse!abc")


async def test_messages_must_be_dicts_of_msgpack_types(make_layer: MakeLayer) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    with pytest.raises(TypeError, match="not a dict"):
        await layer.send(channel, ["type", "m"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="msgpack"):
        await layer.send(channel, {"type": "m", "when": object()})
    with pytest.raises(TypeError, match="msgpack"):
        await layer.group_send("g", {"type": "m", "set": {1, 2}})
    assert layer.stats.sent == 0 and layer.stats.group_sent == 0


async def test_capacity_raises_channel_full(make_layer: MakeLayer, shared: bool) -> None:
    layer = make_layer(capacity=3)
    channel = await layer.new_channel()
    for _ in range(3):
        await layer.send(channel, {"type": "test.message"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "test.message"})
    assert (await received(layer, channel, "a message")) == {"type": "test.message"}
    await layer.send(channel, {"type": "room again"})  # a receive made room
    if not shared:
        for _ in range(3):
            await layer.send("general-1", {"type": "m"})
        with pytest.raises(ChannelFull):
            await layer.send("general-1", {"type": "m"})


async def test_per_channel_capacity_patterns(make_layer: MakeLayer) -> None:
    layer = make_layer(capacity=3, channel_capacity={"tiny*": 1, re.compile(r"^big"): 5, "*": 2})
    assert layer.get_capacity("tiny.abc!x") == 1
    assert layer.get_capacity("big-one") == 5
    assert layer.get_capacity("other") == 2  # first match wins: "*" comes before the default
    tiny, big = await layer.new_channel("tiny"), await layer.new_channel("big")
    await layer.send(tiny, {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send(tiny, {"type": "m"})
    for _ in range(5):
        await layer.send(big, {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send(big, {"type": "m"})


async def test_group_send_skips_full_members_counts_and_logs_once(
    make_layer: MakeLayer, caplog: pytest.LogCaptureFixture
) -> None:
    layer = make_layer(capacity=3)
    layer.log_interval = 3600  # the burst's line, then none for an hour: exactly one line, however slow the machine
    slow, fast = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("test-group", slow)
    await layer.group_add("test-group", fast)
    with caplog.at_level(logging.WARNING, logger="asgi_ws.channels"):
        for i in range(1, 501):
            await layer.group_send("test-group", {"type": f"message.{i}"})
            if i <= 500:
                await received(layer, fast, f"message {i}")
        await asyncio.sleep(0)  # the aggregated line is written right after the burst
    assert [(await received(layer, slow, "a buffered message"))["type"] for _ in range(3)] == [
        "message.1",
        "message.2",
        "message.3",
    ]
    assert buffered(layer, slow) == 0  # message.4 and later were never buffered: memory stays bounded
    assert layer.stats.dropped_full == 497
    lines = [r for r in caplog.records if "over capacity" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # aggregated: never one line per message
    assert slow in lines[0].getMessage() and "test-group" in lines[0].getMessage()


async def test_a_consumer_that_stops_reading_does_not_grow_memory(make_layer: MakeLayer) -> None:
    layer = make_layer(capacity=50)
    stuck = await layer.new_channel()
    await layer.group_add("busy", stuck)
    for i in range(5000):
        await layer.group_send("busy", {"type": "m", "i": i})
    assert buffered(layer, stuck) == 50
    assert layer.stats.dropped_full == 4950


async def test_message_expiry(make_layer: MakeLayer, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    layer = make_layer(expiry=3, clock=clock)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "text": "First!"})
    clock.advance(2)
    await layer.send(channel, {"type": "test.message", "text": "Second!"})
    clock.advance(2)  # the first is 4 s old, the second 2 s
    await layer.send(channel, {"type": "test.message", "text": "Third!"})
    with caplog.at_level(logging.WARNING, logger="asgi_ws.channels"):
        assert (await received(layer, channel, "the second message"))["text"] == "Second!"
        await asyncio.sleep(0)
    assert (await received(layer, channel, "the third message"))["text"] == "Third!"
    assert layer.stats.expired == 1
    assert any("expired unread" in r.getMessage() for r in caplog.records)


async def test_an_expired_message_takes_its_channel_out_of_its_groups(make_layer: MakeLayer) -> None:
    clock = FakeClock()
    layer = make_layer(expiry=10, clock=clock)
    gone, alive = await layer.new_channel(), await layer.new_channel()
    for channel in (gone, alive):
        await layer.group_add("room", channel)
    await layer.group_send("room", {"type": "m", "n": 1})
    await received(layer, alive, "the first group message")
    clock.advance(11)  # nobody read `gone` for longer than expiry: presumed dead, as in Channels' in-memory layer
    layer._cores[asyncio.get_running_loop()].sweep()
    assert layer.stats.expired == 1 and layer.stats.memberships_expired == 1
    await layer.group_send("room", {"type": "m", "n": 2})
    assert (await received(layer, alive, "the second group message"))["n"] == 2
    assert buffered(layer, gone) == 0


async def test_group_expiry(make_layer: MakeLayer, shared: bool) -> None:
    clock = FakeClock()
    layer = make_layer(group_expiry=100, clock=clock)
    old, new = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", old)
    clock.advance(60)
    await layer.group_add("g", new)
    clock.advance(50)  # old joined 110 s ago, new 50 s ago
    await layer.group_send("g", {"type": "m"})
    assert (await received(layer, new, "the group message")) == {"type": "m"}
    assert buffered(layer, old) == 0
    assert layer.stats.memberships_expired == 1
    await layer.group_add("g", new)  # joining again restarts its membership
    clock.advance(80)
    await layer.group_send("g", {"type": "again"})
    assert (await received(layer, new, "the second group message")) == {"type": "again"}


async def test_flush_drops_messages_and_groups(make_layer: MakeLayer) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    await layer.group_add("g", channel)
    await layer.flush()
    assert buffered(layer, channel) == 0
    await layer.group_send("g", {"type": "after flush"})
    await layer.send(channel, {"type": "direct"})
    assert (await received(layer, channel, "the direct message")) == {"type": "direct"}
    assert buffered(layer, channel) == 0


async def test_close_is_idempotent_and_the_layer_reconnects(make_layer: MakeLayer) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.close()
    await layer.close()
    with pytest.raises(Exception, match="closed"):
        await waiting
    again = await layer.new_channel()
    await layer.send(again, {"type": "m"})
    assert (await received(layer, again, "a message after close()")) == {"type": "m"}


# -- cancellation ----------------------------------------------------------------------------------


async def test_a_cancelled_receive_loses_nothing(make_layer: MakeLayer) -> None:
    """channels_redis deleted a channel's buffer when a receive was cancelled (its
    test_receive_cancel is an xfail) and Channels' in-memory layer dropped a queue other
    receivers still waited on: here a message leaves the buffer only in a receive that returns it."""
    layer = make_layer(capacity=1000)
    channel = await layer.new_channel()
    got: list[int] = []
    sent = 0
    for delay in range(6):
        for where in range(4):  # cancel before, while and after the message arrives
            task = asyncio.create_task(layer.receive(channel))
            for _ in range(delay):
                await asyncio.sleep(0)
            if where % 2:
                await layer.send(channel, {"type": "m", "i": sent})
                sent += 1
            task.cancel()
            if where >= 2:
                await layer.send(channel, {"type": "m", "i": sent})
                sent += 1
            with contextlib.suppress(asyncio.CancelledError):
                got.append((await task)["i"])
    while len(got) < sent:
        got.append((await received(layer, channel, f"message {len(got)}"))["i"])
    assert got == list(range(sent))  # each once, in order
    assert buffered(layer, channel) == 0


async def test_a_woken_then_cancelled_receiver_hands_the_message_on(make_layer: MakeLayer) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    first = asyncio.create_task(layer.receive(channel))
    second = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.send(channel, {"type": "only"})  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert (await within(second, "the message handed on to the second receiver")) == {"type": "only"}
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_consumer_shutdown_mid_stream_loses_no_buffered_message(make_layer: MakeLayer) -> None:
    """A worker listening on a general name is stopped (its receive cancelled) while messages
    keep coming; the next worker on the name gets every message the first did not take."""
    layer = make_layer(capacity=1000)
    await layer.listen("jobs") if layer.url != "memory://" else None
    taken: list[int] = []

    async def worker() -> None:
        while True:
            taken.append((await layer.receive("jobs"))["i"])
            await asyncio.sleep(0)

    first = asyncio.create_task(worker())
    for i in range(100):
        await layer.send("jobs", {"type": "job", "i": i})
        if i == 50:
            first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    if layer.url != "memory://":  # delivery through the broker: wait until all 100 were handled here
        await eventually(lambda: layer.stats.received == 100, "the 100 jobs")
    rest = [(await received(layer, "jobs", f"job {i}"))["i"] for i in range(100 - len(taken))]
    assert taken + rest == list(range(100))


async def test_a_receive_waiting_after_its_channel_expired_out_of_its_groups(make_layer: MakeLayer) -> None:
    clock = FakeClock()
    layer = make_layer(expiry=10, clock=clock)
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.group_send("room", {"type": "stale"})
    clock.advance(11)
    waiting = asyncio.create_task(layer.receive(channel))  # purges the stale message, leaves the group, waits
    await eventually(lambda: layer.stats.expired == 1, "the stale message expiring")
    await layer.send(channel, {"type": "fresh"})
    assert (await within(waiting, "the fresh message")) == {"type": "fresh"}


async def test_on_memory_another_process_channel_is_counted_unroutable(make_layer: MakeLayer, shared: bool) -> None:
    if shared:
        return  # on a shared broker it is a publish to that process (test_processes.py)
    layer = make_layer()
    await layer.send("specific.0123456789abcdef!x", {"type": "m"})  # memory://: no other process exists
    await layer.group_add("g", "specific.0123456789abcdef!x")
    assert layer.stats.unroutable == 2
    with pytest.raises(ValueError, match="general channel names"):
        await layer.listen("specific.0123456789abcdef!x")
