"""The Python client comes back at once (restart jitter, no backoff) after 1001 and 1012."""

from __future__ import annotations

import pytest

from asgi_ws.client import Backoff, Event, connect
from tests.client.apps import closing_with
from tests.client.conftest import until
from tests.support.server import serve


@pytest.mark.parametrize("code", [1001, 1012])
async def test_the_python_client_reconnects_at_once_after_a_server_going_away(code: int) -> None:
    handshakes: list[str] = []
    events: list[Event] = []
    slow = Backoff(base=30.0, cap=60.0)  # any backoff wait would take seconds
    async with serve(closing_with(code, "going away", log=handshakes)) as server:
        client = await connect(server.ws_url("/"), backoff=slow, resume=False, on_event=events.append)
        try:
            await until(lambda: len(handshakes) >= 2)  # it came back
            first = next(e for e in events if e.kind == "reconnecting")
            assert (first.code, first.attempt) == (code, 1)
            assert first.delay is not None and 0 <= first.delay <= slow.restart_jitter
        finally:
            await client.close()
