"""The suite's own safety net: a test's bare ``await ws.recv()`` fails with a message, never hangs."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.support import bounded
from tests.support.apps import echo_app
from tests.support.server import serve


async def test_a_bare_recv_in_a_test_fails_after_the_bound_naming_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounded, "RECV_TIMEOUT", 0.3)
    async with serve(echo_app()) as server:
        async with connect(server.ws_url("/ws")) as ws:
            await ws.recv()  # the echo app's first message
            with pytest.raises(AssertionError, match=r"nothing arrived on the WebSocket /ws within 0.3 s"):
                await ws.recv()
            await ws.send("still usable")
            assert await ws.recv() == "still usable"
