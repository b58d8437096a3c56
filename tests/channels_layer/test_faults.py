"""Broker faults: a broker server the test owns is killed and restarted under two layers; they
reconnect, restore their group subscriptions, count and log the loss window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest

from asgi_ws.contrib.channels import BrokerChannelLayer
from asgi_ws.exceptions import BrokerError, BrokerUnavailable
from tests.channels_layer.helpers import eventually, received
from tests.support.own_servers import own_server


@pytest.mark.parametrize("kind", ["redis", "postgres", "nats"])
async def test_a_broker_restart_is_survived_and_reported(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with own_server(kind) as server:
        prefix = f"fault-{uuid.uuid4().hex[:8]}"
        sender, listener = BrokerChannelLayer(server.url, prefix=prefix), BrokerChannelLayer(server.url, prefix=prefix)
        try:
            channel = await _first_connection(listener)
            await _first_connection(sender)
            await listener.group_add("room", channel)
            await sender.group_send("room", {"type": "m", "n": 0})
            assert (await received(listener, channel, "the message before the restart"))["n"] == 0
            with caplog.at_level(logging.WARNING):
                server.restart()
                await eventually(lambda: listener.stats.broker_disconnects == 1, "the loss being counted", 30)
                await eventually(lambda: listener.stats.broker_lost_seconds > 0, "the loss window being counted", 30)
                # The group subscription is back: a group_send once the sender is connected again arrives.
                for attempt in range(150):
                    with contextlib.suppress(BrokerError, asyncio.TimeoutError):
                        await sender.group_send("room", {"type": "m", "n": 1, "attempt": attempt})
                        message = await asyncio.wait_for(listener.receive(channel), 0.2)
                        break
                else:
                    raise AssertionError("no group message got through after the restart")
            assert message["n"] == 1
            assert "channel layer lost the broker" in caplog.text
            assert "channel layer reconnected" in caplog.text
        finally:
            await sender.close()
            await listener.close()


async def _first_connection(layer: BrokerChannelLayer) -> str:
    """``new_channel()`` (which connects), retried while the fresh server is still starting up
    (PostgreSQL listens before it accepts connections)."""
    for _ in range(100):
        with contextlib.suppress(BrokerUnavailable):
            return await layer.new_channel()
        await asyncio.sleep(0.1)
    raise AssertionError(f"could not connect to {layer!r} within 10 s")


async def test_a_group_send_without_the_broker_still_reaches_this_processs_members() -> None:
    """``group_send`` publishes first and fans out to this process's members after, whatever
    the publish did: with the broker gone, they still get the message, and the caller gets
    the broker's error."""
    with own_server("redis") as server:
        layer = BrokerChannelLayer(server.url, prefix=f"fault-{uuid.uuid4().hex[:8]}")
        try:
            channel = await _first_connection(layer)
            await layer.group_add("room", channel)
            server.kill()
            with pytest.raises(BrokerError):
                await asyncio.wait_for(layer.group_send("room", {"type": "m", "n": 1}), 30)
            assert (await received(layer, channel, "the message to this process's member"))["n"] == 1
        finally:
            await asyncio.wait_for(layer.close(), 30)
