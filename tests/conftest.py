from __future__ import annotations

from collections.abc import Iterator

import pytest

from asgi_ws._repeated import reset_all
from tests.support import bounded
from tests.support.server import WS_IMPLS

bounded.install()  # every bare `await ws.recv()` in a test fails after a bound instead of hanging


@pytest.fixture(autouse=True)
def _fresh_repeated_logs() -> Iterator[None]:
    """Each test sees the first occurrence of a repeated line logged (asgi_ws._repeated), and
    leaves no summary pending for the end of the run."""
    reset_all()
    yield
    reset_all()


@pytest.fixture(params=WS_IMPLS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    """Each uvicorn WebSocket implementation in turn."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (started if down; skip, or fail under CI=true, if impossible)."""
    from tests.support.services import require

    return require("redis")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    from tests.support.services import require

    return require("postgres")


@pytest.fixture(scope="session")
def nats_url() -> str:
    from tests.support.services import require

    return require("nats")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The machine's RabbitMQ (guest/guest on 127.0.0.1:5672)."""
    from tests.support.services import require

    return require("rabbitmq")
