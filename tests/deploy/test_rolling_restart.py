"""A rolling restart behind nginx under a steady publish: every client gets every message once, in order.

Three ``asgi-ws serve`` workers behind Debian's nginx (``deploy/nginx.conf``, TLS), Redis as
broker with history and as session store, one resume key. Resumable clients connect to
``wss://`` through nginx and subscribe; the application publishes a numbered message every
20 ms through the broker. The workers are restarted one at a time, as a deploy does it: SIGTERM
(the worker drains: handshakes get 503, connections are flushed and closed with 1001), wait
for its exit, start it again, wait until nginx sends it a handshake, go on to the next. The
clients reconnect through nginx at once and resume on another worker; nginx retries on another
worker any handshake that reached the draining or stopped one (``proxy_next_upstream error
timeout http_503``), so its access log shows no 5xx for a WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from asgi_ws.client import Client, Event, connect
from asgi_ws.rooms import Rooms
from tests.deploy.conftest import ORIGIN, WORKERS, Deployment, Worker, deployment
from tests.shutdown.conftest import within

CLIENTS = 30
PUBLISH_EVERY = 0.02  # seconds
AFTER_THE_LAST_RESTART = 25  # messages published once every worker was restarted
END = "end"


async def read_until_end(client: Client) -> list[int]:
    numbers: list[int] = []
    async for frame in client:
        data = json.loads(frame)["data"]
        if data == END:
            return numbers
        numbers.append(data)
    raise AssertionError(f"the client stopped after {len(numbers)} messages")


async def wait_until_routed(deployed: Deployment, worker: Worker, timeout: float = 20.0) -> float:
    """Open connections through nginx until one reaches ``worker`` (nginx takes it back once its
    fail_timeout after the drain's 503s has passed); returns the seconds it took."""
    started = time.monotonic()
    before = worker.log.read_text().count("[accepted]")
    while time.monotonic() - started < timeout:
        probe = await connect(deployed.url, ssl=deployed.ssl_context(), headers={"Origin": ORIGIN}, resume=False)
        try:
            if worker.log.read_text().count("[accepted]") > before:
                return time.monotonic() - started
        finally:
            await probe.close()
        await asyncio.sleep(0.2)
    raise AssertionError(f"nginx sent no handshake to the restarted worker on {worker.port} within {timeout} s")


async def test_rolling_restart_behind_nginx_loses_nothing_and_logs_no_5xx(redis_url: str, tmp_path: Path) -> None:
    events: list[list[Event]] = [[] for _ in range(CLIENTS)]
    with deployment(redis_url, tmp_path, "--drain-timeout", "10") as deployed:
        rooms = Rooms(f"{redis_url}?history=1000", namespace=deployed.namespace)  # the application's publisher
        await rooms.start()
        clients: list[Client] = []
        restarted = asyncio.Event()

        async def publish() -> int:
            n = 0
            while not restarted.is_set():
                n += 1
                await rooms.publish("feed", n)
                await asyncio.sleep(PUBLISH_EVERY)
            for _ in range(AFTER_THE_LAST_RESTART):
                n += 1
                await rooms.publish("feed", n)
                await asyncio.sleep(PUBLISH_EVERY)
            await rooms.publish("feed", END)
            return n

        statuses: list[int] = []
        tasks: list[asyncio.Task[object]] = []
        try:
            context = deployed.ssl_context()
            clients += await asyncio.gather(
                *(
                    connect(deployed.url, ssl=context, headers={"Origin": ORIGIN}, on_event=events[i].append)
                    for i in range(CLIENTS)
                )
            )
            await asyncio.gather(*(client.subscribe("feed") for client in clients))
            readers = [asyncio.create_task(read_until_end(client)) for client in clients]
            publisher = asyncio.create_task(publish())
            tasks += [*readers, publisher]
            await asyncio.sleep(0.5)
            for worker in deployed.workers:
                statuses.append(await asyncio.to_thread(worker.stop))
                worker.start()
                await asyncio.to_thread(worker.wait_listening)
                await wait_until_routed(deployed, worker)
            restarted.set()
            last = await within(publisher, 30, "the publisher's last messages")
            results = await within(asyncio.gather(*readers), 30, "every client reading every message")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, *(client.close() for client in clients), return_exceptions=True)
            await rooms.close()
        deployed.stop_nginx()  # graceful: every access line is written
        access = deployed.access_log()
        worker_logs = deployed.worker_logs()
        error_log = deployed.error_log()

    assert statuses == [0] * WORKERS, worker_logs
    expected = list(range(1, last + 1))
    for i, numbers in enumerate(results):
        assert numbers == expected, f"client {i}: {len(numbers)} of {last} messages, first difference {_diff(numbers)}"
    for i, client_events in enumerate(events):
        drops = [(e.code, e.reason) for e in client_events if e.kind == "disconnected"][:-1]  # the last: close()
        kinds = [e.kind for e in client_events]
        assert drops and all(drop == (1001, "going away") for drop in drops), f"client {i}: {drops}"
        assert kinds.count("resumed") == len(drops), f"client {i}: {kinds}"
        assert not {"resume_failed", "session_lost", "error"} & set(kinds), f"client {i}: {kinds}"

    handshakes = [line for line in access if line.websocket]
    failed = [line.text for line in handshakes if line.status >= 500]
    assert not failed, "nginx answered WebSocket handshakes with 5xx:\n" + "\n".join(failed) + "\n" + error_log
    # least_conn sends the first reconnection after each SIGTERM to the worker left with no
    # connection: 503 while it drains, refused (502 in $upstream_status) once it stopped; nginx
    # tried the next worker each time.
    retried = [line for line in handshakes if len(line.upstream_statuses) > 1]
    assert len(retried) >= WORKERS, [line.text for line in retried]
    assert all(line.status == 101 and line.upstream_statuses[0] in ("502", "503") for line in retried), [
        line.text for line in retried
    ]
    assert all("?" not in line.request for line in access), "the access log must leave out query strings (tokens)"

    assert "Traceback" not in worker_logs and "ERROR" not in worker_logs, worker_logs
    drains = re.findall(r"drained (\d+) connection\(s\) in [\d.]+ s: \d+ closed with 1001, 0 still open", worker_logs)
    assert len(drains) == WORKERS and all(int(n) > 0 for n in drains), worker_logs


def _diff(numbers: list[int]) -> str:
    for index, number in enumerate(numbers):
        if number != index + 1:
            return f"at position {index}: {numbers[max(0, index - 2) : index + 3]}"
    return f"at the end ({len(numbers)})"
