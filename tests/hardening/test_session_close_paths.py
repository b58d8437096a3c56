"""The closes a session store decides (4404 lost, 1013 unavailable) let the application clean
up, log no traceback, and leave the other sessions on the same store alone.

tests/test_close_paths.py covers the closes of the limits, the heartbeat, backpressure, expired
credentials and a takeover; these two come from the store, under real uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.asyncio.client import connect

from asgi_ws import ResumeMiddleware
from asgi_ws.resume.stores.base import Write
from asgi_ws.resume.stores.memory import MemorySessionStore
from tests.support.logs import captured_logs, describe, is_error
from tests.support.server import serve
from tests.test_close_paths import Cleanup, closed_with, endpoint_app

pytestmark = pytest.mark.e2e


class TroubledStore(MemorySessionStore):
    """A memory store that can lose one session, or fail the writes of one, on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    def lose(self, session_id: str) -> None:
        del self._records[session_id]

    async def write_many(self, writes: Sequence[Write]) -> Sequence[bool | BaseException | None]:
        results = await super().write_many([w for w in writes if w.session_id not in self.failing])
        done = iter(results)
        return [ConnectionError("store down") if w.session_id in self.failing else next(done) for w in writes]


async def _session_of(ws: Any) -> str:
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message.get("$ws") == "session":
                return str(message["id"])


@pytest.mark.parametrize("trouble", ["lost", "unavailable"])
async def test_a_close_the_session_store_decides_lets_the_app_clean_up(trouble: str) -> None:
    cleanup = Cleanup()
    store = TroubledStore()
    app = ResumeMiddleware(endpoint_app(cleanup), secret_keys=["k" * 32], store=store, window=60)
    with captured_logs(logging.WARNING) as logs:
        async with serve(app, log_config=None) as server:
            url = server.ws_url("/ws?ws_resume=new")
            async with connect(url) as victim, connect(url) as bystander:
                victim_id, _ = await _session_of(victim), await _session_of(bystander)
                if trouble == "lost":
                    store.lose(victim_id)
                else:
                    store.failing.add(victim_id)
                await victim.send("echo me")  # the echo's write finds the trouble
                code, reason = await closed_with(victim)
                assert code == (4404 if trouble == "lost" else 1013), (code, reason)
                assert await cleanup.wait() in (code, 1006)
                await bystander.send("still here")
                assert await asyncio.wait_for(bystander.recv(), 10) == "still here"
    # A store outage is the server's trouble, not the client's: one ERROR line, no traceback.
    outage = "could not store outgoing messages"
    errors = [r for r in logs if is_error(r) and (r.exc_info is not None or outage not in r.getMessage())]
    assert not errors, f"the server logged:\n{describe(errors)}"
