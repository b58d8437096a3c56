"""Several layers on one broker are several processes: what crosses between them, at what cost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.channels_layer.conftest import BROKERS, MakeLayer
from tests.channels_layer.helpers import FakeClock, buffered, eventually, received, settled


@pytest.fixture(params=[b for b in BROKERS if b != "memory"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The shared brokers only: layers on memory:// share nothing, by design."""
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_group_send_is_one_publish_whatever_the_group_size(make_layer: MakeLayer) -> None:
    a, b, c = make_layer(), make_layer(), make_layer()
    members = {layer: [await layer.new_channel() for _ in range(20)] for layer in (a, b, c)}
    for layer, channels in members.items():
        for channel in channels:
            await layer.group_add("room", channel)
    for sender in (a, b):
        before = sender.stats.published
        await sender.group_send("room", {"type": "chat.message", "from": sender.node})
        assert sender.stats.published == before + 1
        for layer, channels in members.items():
            for channel in channels:
                message = await received(layer, channel, f"the group message from {sender.node} in {layer.node}")
                assert message == {"type": "chat.message", "from": sender.node}
    assert a.stats.received == 1 and c.stats.received == 2  # one broker message per process per group_send
    assert c.stats.delivered == 40


async def test_send_to_another_process_channel_is_one_publish(make_layer: MakeLayer) -> None:
    a, b = make_layer(), make_layer()
    channel = await b.new_channel()
    before = a.stats.published
    for i in range(50):
        await a.send(channel, {"type": "m", "i": i})
    assert a.stats.published == before + 50
    assert [(await received(b, channel, f"message {i}"))["i"] for i in range(50)] == list(range(50))


async def test_group_add_and_discard_of_another_process_channel(make_layer: MakeLayer) -> None:
    a, b = make_layer(), make_layer()
    channel = await b.new_channel()
    await a.group_add("g", channel)  # b holds the membership (its process owns the channel)
    await eventually(lambda: "g" in b._cores[asyncio.get_running_loop()].groups, "b taking the membership")
    await eventually(lambda: bool(b._cores[asyncio.get_running_loop()].subscriptions.active), "b subscribing")
    await a.group_send("g", {"type": "first"})
    assert (await received(b, channel, "the group message")) == {"type": "first"}
    await a.group_discard("g", channel)
    await eventually(lambda: "g" not in b._cores[asyncio.get_running_loop()].groups, "b dropping the membership")
    await a.group_send("g", {"type": "second"})
    await settled(b, sender=a)
    assert buffered(b, channel) == 0


async def test_a_group_of_general_names_reaches_their_listeners(make_layer: MakeLayer) -> None:
    a, worker = make_layer(), make_layer()
    await worker.listen("jobs")
    await a.group_add("g", "jobs")  # a forwards the group's messages to the name
    await a.group_send("g", {"type": "job"})
    assert (await received(worker, "jobs", "the forwarded group message")) == {"type": "job"}
    await worker.group_discard("g", "jobs")  # any process may discard it: broadcast
    await settled(a, sender=worker)
    assert "g" not in a._cores[asyncio.get_running_loop()].groups


async def test_a_full_channel_of_another_process_drops_there_counted(make_layer: MakeLayer) -> None:
    a, b = make_layer(), make_layer(capacity=3)
    channel = await b.new_channel()
    for i in range(10):
        await a.send(channel, {"type": "m", "i": i})  # no ChannelFull: the sender cannot know
    await eventually(lambda: b.stats.received == 10, "the 10 messages reaching b")
    assert b.stats.dropped_full == 7
    assert [(await received(b, channel, f"message {i}"))["i"] for i in range(3)] == [0, 1, 2]


async def test_flush_reaches_every_process_of_the_prefix(make_layer: MakeLayer) -> None:
    a, b = make_layer(), make_layer()
    other_prefix = make_layer(prefix="other-prefix-" + a.prefix)
    channel, kept = await b.new_channel(), await other_prefix.new_channel()
    await b.group_add("g", channel)
    await other_prefix.group_add("g", kept)
    await b.send(channel, {"type": "old"})
    await a.flush()
    await eventually(lambda: not b._cores[asyncio.get_running_loop()].groups, "b flushing")
    assert buffered(b, channel) == 0
    await other_prefix.group_send("g", {"type": "kept"})
    assert (await received(other_prefix, kept, "the other prefix's group message")) == {"type": "kept"}


async def test_expiry_counts_from_arrival_in_the_receiving_process(make_layer: MakeLayer) -> None:
    clock = FakeClock()
    a, b = make_layer(), make_layer(expiry=5, clock=clock)
    channel = await b.new_channel()
    await a.send(channel, {"type": "m", "n": 1})
    await eventually(lambda: buffered(b, channel) == 1, "the message reaching b")
    clock.advance(6)
    await a.send(channel, {"type": "m", "n": 2})
    assert (await received(b, channel, "the second message"))["n"] == 2
    assert b.stats.expired == 1


async def test_many_processes_join_and_leave_the_same_group_concurrently(
    make_layer: MakeLayer, caplog: pytest.LogCaptureFixture
) -> None:
    layers = [make_layer() for _ in range(4)]
    channels = {layer: [await layer.new_channel() for _ in range(50)] for layer in layers}
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*(layer.group_add("busy", ch) for layer, chs in channels.items() for ch in chs))
        await layers[0].group_send("busy", {"type": "all"})
        for layer, chs in channels.items():
            for channel in chs:
                assert (await received(layer, channel, "the message to 200 members")) == {"type": "all"}
        await asyncio.gather(*(layer.group_discard("busy", ch) for layer, chs in channels.items() for ch in chs))
    for layer in layers:
        core = layer._cores[asyncio.get_running_loop()]
        assert not core.groups and f"{layer.prefix}:g:busy" not in core.subscriptions.active
    assert not [r for r in caplog.records if r.name.startswith("asgi_ws")]


async def test_a_general_name_is_listened_to_until_idle_for_expiry_seconds(make_layer: MakeLayer) -> None:
    clock = FakeClock()
    sender, worker = make_layer(), make_layer(expiry=30, clock=clock)
    await worker.listen("jobs")
    core = worker._cores[asyncio.get_running_loop()]
    subscription = f"{worker.prefix}:c:jobs"
    await sender.send("jobs", {"type": "job", "n": 1})
    assert (await received(worker, "jobs", "the job"))["n"] == 1
    await worker.flush()  # flushing drops messages, not the listening
    clock.advance(20)
    core.sweep()
    assert subscription in core.subscriptions.active
    await sender.send("jobs", {"type": "job", "n": 2})  # still listened to: buffered until received
    await eventually(lambda: buffered(worker, "jobs") == 1, "the second job")
    assert (await received(worker, "jobs", "the second job"))["n"] == 2
    clock.advance(31)
    core.sweep()  # idle for longer than expiry: unsubscribed
    await eventually(lambda: subscription not in core.subscriptions.active, "the idle name being unsubscribed")
