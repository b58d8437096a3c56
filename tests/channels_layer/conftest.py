"""BrokerChannelLayer against every broker: ``broker_url`` is memory://, the machine's Redis,
PostgreSQL, NATS and RabbitMQ in turn; ``make_layer`` builds layers (several = several processes sharing
the broker) with a prefix unique to the test, and closes them afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.django import setup

setup()  # before Channels is imported

from asgi_ws.contrib.channels import BrokerChannelLayer  # noqa: E402
from tests.channels_layer.helpers import FakeClock  # noqa: E402

BROKERS = ["memory", "redis", "postgres", "nats", "amqp"]


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def shared(broker_url: str) -> bool:
    """Whether layers on ``broker_url`` reach each other (memory:// is one process's world)."""
    return not broker_url.startswith("memory")


MakeLayer = Callable[..., BrokerChannelLayer]


@pytest.fixture
async def make_layer(broker_url: str) -> AsyncIterator[MakeLayer]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    layers: list[BrokerChannelLayer] = []

    def make(*, clock: FakeClock | None = None, url: str | None = None, **config: Any) -> BrokerChannelLayer:
        layer = BrokerChannelLayer(url or broker_url, prefix=config.pop("prefix", prefix), **config)
        if clock is not None:
            layer._clock = clock
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        await layer.close()
