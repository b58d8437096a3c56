from __future__ import annotations

import asyncio
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
