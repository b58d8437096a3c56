"""The layer as Channels uses it: configured by CHANNEL_LAYERS, under consumers, and called with
``async_to_sync`` from threads that have no event loop (Django views, management commands)."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from asgi_ws.contrib.channels import BrokerChannelLayer
from tests.channels_layer.conftest import MakeLayer
from tests.channels_layer.helpers import eventually, received, within


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    groups = ["room"]  # noqa: RUF012 - Channels' own idiom

    async def chat_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


async def test_configured_through_channel_layers(broker_url: str) -> None:
    config = {"url": broker_url, "prefix": "configured", "capacity": 7, "channel_capacity": {"http.*": 3}}
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer", "CONFIG": config}}
    ):
        layer = get_channel_layer()
        try:
            assert isinstance(layer, BrokerChannelLayer)
            assert (layer.prefix, layer.capacity, layer.get_capacity("http.response!x")) == ("configured", 7, 3)
        finally:
            await layer.close()


async def test_consumers_in_a_group(make_layer: MakeLayer) -> None:
    layer = make_layer()
    old = channel_layers.set("default", layer)
    try:
        communicators = [WebsocketCommunicator(RoomConsumer.as_asgi(), "/ws/") for _ in range(3)]
        for communicator in communicators:
            connected, _ = await communicator.connect()
            assert connected
        await layer.group_send("room", {"type": "chat.message", "text": "hello"})
        for communicator in communicators:
            assert await within(communicator.receive_from(timeout=10), "the group message to the consumer") == "hello"
        await communicators[0].disconnect()  # the consumer's websocket_disconnect discards its groups
        core = layer._cores[asyncio.get_running_loop()]
        await eventually(lambda: len(core.groups["room"].members) == 2, "the membership leaving with the consumer")
        await layer.group_send("room", {"type": "chat.message", "text": "again"})
        for communicator in communicators[1:]:
            assert await within(communicator.receive_from(timeout=10), "the second group message") == "again"
            await communicator.disconnect()
    finally:
        # set() stores None too, which get_channel_layer() would then return to every later test.
        if old is None:
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", old)


async def test_async_to_sync_from_a_thread_reaches_this_loops_consumers(make_layer: MakeLayer) -> None:
    """A Django view or a management command calls ``async_to_sync(layer.group_send)``: a new
    event loop in another thread. The call is made on the loop the layer lives on."""
    layer = make_layer()
    channel = await layer.new_channel()
    await layer.group_add("notifications", channel)

    def view() -> None:
        async_to_sync(layer.group_send)("notifications", {"type": "notify", "from": "view"})
        async_to_sync(layer.send)(channel, {"type": "notify", "from": "send"})

    await asyncio.to_thread(view)
    assert (await received(layer, channel, "the view's group message")) == {"type": "notify", "from": "view"}
    assert (await received(layer, channel, "the view's direct message")) == {"type": "notify", "from": "send"}
    assert len(layer._cores) == 1


async def test_a_layer_used_only_from_short_lived_loops(make_layer: MakeLayer, shared: bool) -> None:
    """Each ``async_to_sync`` in a thread with no loop running anywhere for the layer gets a loop
    of its own, closed after the call: the layer connects there and is closed with the loop."""
    if not shared:
        return  # memory://: a loop that closes takes its world with it, as Channels' in-memory layer does
    listener, sender = make_layer(), make_layer()
    channel = await listener.new_channel()
    await listener.group_add("g", channel)
    errors: list[BaseException] = []

    def script() -> None:
        try:
            for i in range(2):
                async_to_sync(sender.group_send)("g", {"type": "m", "i": i})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=script)
    thread.start()
    await asyncio.to_thread(thread.join, 30)
    assert not errors and not thread.is_alive()
    assert [(await received(listener, channel, f"message {i}"))["i"] for i in range(2)] == [0, 1]
    assert not sender._cores  # each short-lived loop closed its share of the layer


def test_closing_the_loop_closes_the_layer_there_and_keeps_other_wrappers() -> None:
    loop = asyncio.new_event_loop()
    others: list[str] = []
    original = loop.close

    def channels_redis_like_close() -> None:  # channels_redis wraps loop.close the same way
        others.append("ran")
        original()

    loop.close = channels_redis_like_close  # type: ignore[method-assign]
    layer = BrokerChannelLayer()
    loop.run_until_complete(layer.new_channel())
    core = layer._cores[loop]
    loop.close()
    assert core.closed and not layer._cores and others == ["ran"] and loop.is_closed()
