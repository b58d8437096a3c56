"""A rolling restart behind nginx, each worker's drain held open: ``/healthz`` says so, nginx routes around it.

Three ``asgi-ws serve`` workers behind Debian's nginx (``deploy/nginx.conf``, TLS). Each worker in
turn gets a subscriber of its own (on its port, not through nginx) that reads nothing, so that
its drain lasts until the test lets the subscriber read. Then SIGTERM: the worker's ``/healthz``
answers 503 ``draining`` while it still listens (what HAProxy's ``option httpchk`` polls), and the
handshakes and requests sent through nginx meanwhile (whose checks are passive: it learns from
the drain's 503 and retries on another worker) all succeed, none on the draining worker. The
worker then exits 0, is started again, answers 200, and nginx sends it handshakes again.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx

from asgi_ws.client import Backoff, connect
from tests.deploy.conftest import ORIGIN, WORKERS, Deployment, Worker, deployment
from tests.deploy.test_rolling_restart import wait_until_routed
from tests.shutdown.conftest import backlogged_reader, within

PROBES = 6  # handshakes through nginx while a worker drains


async def healthz(port: int) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"http://127.0.0.1:{port}/healthz")


async def until_healthz(worker: Worker, status: int) -> httpx.Response:
    while True:
        answer = await healthz(worker.port)
        if answer.status_code == status:
            return answer
        await asyncio.sleep(0.05)


async def through_nginx(deployed: Deployment) -> None:
    """One handshake through nginx that must succeed at once (no client retry), then closed."""
    client = await connect(
        deployed.url, ssl=deployed.ssl_context(), headers={"Origin": ORIGIN}, backoff=Backoff(max_attempts=0)
    )
    await client.close()


async def test_a_draining_worker_says_so_on_healthz_and_nginx_sends_it_nothing(redis_url: str, tmp_path: Path) -> None:
    hold = ("--allow-missing-origin", "--rate", "100000", "--drain-timeout", "60")
    with deployment(redis_url, tmp_path, *hold) as deployed:
        for worker in deployed.workers:
            assert (await healthz(worker.port)).text == "ok"
        statuses: list[int] = []
        for worker in deployed.workers:
            reader = await backlogged_reader(worker.port)
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            draining = await within(until_healthz(worker, 503), 20, f"/healthz of {worker.port} answering 503")
            assert draining.text.startswith("draining"), draining.text

            accepted = worker.log.read_text().count("[accepted]")
            for _ in range(PROBES):
                await through_nginx(deployed)
            async with httpx.AsyncClient(verify=deployed.ssl_context(), timeout=10) as client:
                relayed = await client.get(f"https://localhost:{deployed.port}/healthz")
            assert (relayed.status_code, relayed.text) == (200, "ok"), "nginx passed the check to a serving worker"
            assert worker.log.read_text().count("[accepted]") == accepted, "no handshake reached the draining worker"
            assert (await healthz(worker.port)).status_code == 503, "still draining (the reader holds it)"

            _, close = await reader.read_all()
            assert close is not None and close.code == 1001
            statuses.append(await asyncio.to_thread(worker.proc.wait, 30))
            worker.start()
            await asyncio.to_thread(worker.wait_listening)
            assert (await healthz(worker.port)).text == "ok"
            await wait_until_routed(deployed, worker)
        deployed.stop_nginx()
        access = deployed.access_log()
        logs = deployed.worker_logs()

    assert statuses == [0] * WORKERS, logs
    handshakes = [line for line in access if line.websocket]
    assert not [line.text for line in handshakes if line.status >= 500], [line.text for line in handshakes]
    # nginx learnt of a drain from its 503 (retried on the next worker): the passive check at work.
    met = [line for line in access if "503" in line.upstream_statuses]
    assert met and all(line.status in (101, 200) for line in met), [line.text for line in met]
