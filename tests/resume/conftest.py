from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.resume.wire import OPENED


@pytest.fixture(autouse=True)
async def _close_every_client() -> AsyncIterator[None]:
    """Aborted and timed-out test clients are closed before the next test (no ResourceWarning)."""
    yield
    sockets, OPENED[:] = list(OPENED), []
    for ws in sockets:
        ws.transport.abort()
    await asyncio.gather(*(ws.wait_closed() for ws in sockets), return_exceptions=True)


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A session store URL: the memory store, then the machine's Redis under a fresh prefix."""
    if request.param == "memory":
        return "memory://"
    redis_url = request.getfixturevalue("redis_url")
    return f"{redis_url}?prefix=asgi_ws_test_{uuid.uuid4().hex[:8]}:"
