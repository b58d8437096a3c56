"""Two real server processes (uvicorn and daphne) serving a Channels app on BrokerChannelLayer
over Redis, with real WebSocket clients: a ``group_send`` made in either process reaches the
consumers of both."""

from __future__ import annotations

import contextlib
import sys
import uuid

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.channels_layer.helpers import within
from tests.support.clients import opened
from tests.support.procs import free_port, server_process, uvicorn_process

pytestmark = pytest.mark.e2e


async def _recv(ws: ClientConnection, what: str) -> str:
    message = await within(ws.recv(), what, 15)
    assert isinstance(message, str)
    return message


async def test_group_send_from_either_process_reaches_both(redis_url: str) -> None:
    env = {"LAYER_URL": redis_url, "LAYER_PREFIX": f"servers-{uuid.uuid4().hex[:8]}"}
    app, port = "tests.channels_layer.server_app:app", free_port()
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(uvicorn_process(app, env=env)),
            stack.enter_context(server_process(daphne, port, env=env)),
        ]
        async with contextlib.AsyncExitStack() as clients:
            members = [await clients.enter_async_context(opened(s.ws_url("/ws/"))) for s in servers for _ in "12"]
            for ws in members:
                assert (await _recv(ws, "the consumer's join")).startswith("joined ")
            async with httpx.AsyncClient(timeout=15) as http:
                for server in servers:
                    text = f"hello from {server.port}"
                    response = await http.get(f"http://127.0.0.1:{server.port}/send", params={"text": text})
                    assert response.text == "sent"
                    for ws in members:
                        assert await _recv(ws, f"the group message sent in the process on port {server.port}") == text
