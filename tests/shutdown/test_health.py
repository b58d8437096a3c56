"""``/healthz`` and ``/readyz`` of real ``asgi-ws serve`` processes: 200 while serving, 503 from the
moment a drain starts (the listener still open, so a proxy's check sees it), 503 with the cause
when the session store cannot be reached."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.shutdown.conftest import backlogged_reader, within
from tests.support.own_servers import own_server
from tests.support.procs import asgi_ws_serve

HOLD = ("--allow-missing-origin", "--rate", "100000", "--drain-timeout", "60", "--resume-window", "0")


async def get(port: int, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, f"http://127.0.0.1:{port}{path}")


async def until(port: int, path: str, status: int) -> httpx.Response:
    """Ask ``path`` until it answers ``status`` (the caller bounds the wait)."""
    while True:
        answer = await get(port, path)
        if answer.status_code == status:
            return answer
        await asyncio.sleep(0.05)


async def test_healthz_is_ok_while_serving_and_503_draining_once_sigterm_starts_the_drain() -> None:
    with asgi_ws_serve(*HOLD, "--no-demo") as server:
        health, ready, head = (
            await get(server.port, "/healthz"),
            await get(server.port, "/readyz"),
            await get(server.port, "/healthz", "HEAD"),
        )
        assert (health.status_code, health.text) == (200, "ok")
        assert (ready.status_code, ready.text) == (200, "ready")
        assert (head.status_code, head.content) == (200, b"")
        assert health.headers["cache-control"] == "no-store"
        assert (await get(server.port, "/healthz", "POST")).status_code == 405

        reader = await backlogged_reader(server.port)  # holds the drain open until it reads
        server.proc.send_signal(signal.SIGTERM)

        draining = await within(until(server.port, "/healthz", 503), 20, "/healthz answering 503 after SIGTERM")
        assert draining.status_code == 503 and draining.text.startswith("draining"), draining.text
        ready = await get(server.port, "/readyz")
        assert ready.status_code == 503 and ready.text.startswith("draining"), ready.text
        assert server.proc.poll() is None, "still serving: the drain waits for the reader's backlog"

        texts, close = await reader.read_all()
        assert close is not None and close.code == 1001
        assert texts and '"data":"0255' in texts[-1], "the backlog (the newest messages: drop_oldest) was written"
        assert await asyncio.to_thread(server.proc.wait, 30) == 0


async def test_readyz_names_an_unreachable_session_store_and_healthz_stays_ok() -> None:
    with own_server("redis") as redis, asgi_ws_serve("--session-store", redis.url) as server:
        assert (await get(server.port, "/readyz")).status_code == 200
        redis.kill()
        ready = await within(until(server.port, "/readyz", 503), 10, "/readyz answering 503")
        assert ready.text.startswith("not ready: session store: "), ready.text
        assert "ConnectionError" in ready.text and "password" not in ready.text, ready.text
        # Liveness does not depend on Redis: a shared Redis down must not take every worker out of a proxy.
        assert (await get(server.port, "/healthz")).status_code == 200
        redis.start()

        await within(until(server.port, "/readyz", 200), 30, "/readyz back to 200 once Redis is back")
