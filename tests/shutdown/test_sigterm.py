"""SIGTERM one of two ``asgi-ws serve`` processes under a steady publish: nothing is lost.

Two real processes share a Redis broker with history and the Redis session store (same
``ASGI_WS_RESUME_KEYS``). Fifty resuming Python clients reach the first through a TCP proxy
standing in for a load balancer; a publisher on the second publishes numbered messages. The
test takes the first process out of the proxy and sends it SIGTERM, as an orchestrator does:
it drains (1001 after the flush), the clients come back at once through the proxy, land on
the second process and resume there. Every client ends with every message once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import uuid
from pathlib import Path

from asgi_ws.client import Client, Event, connect
from tests.shutdown.conftest import within
from tests.support.procs import asgi_ws_serve

ORIGIN = "https://app.example.com"
CLIENTS = 50
MESSAGES = 300
SIGTERM_AT = 100  # the publish after which the first process gets SIGTERM
DRAIN_TIMEOUT = 10.0
EXIT_MARGIN = 10.0  # uvicorn's own shutdown after the drain (asgi_ws.cli.SHUTDOWN_GRACE) and the exit


class Proxy:
    """A TCP proxy sending each new connection to ``backend`` (a port the test switches)."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.backend)
            except OSError:
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def read_every_message(client: Client) -> list[int]:
    numbers: list[int] = []
    async for frame in client:
        numbers.append(json.loads(frame)["data"])
        if numbers[-1] == MESSAGES:
            return numbers
    raise AssertionError(f"the client stopped after {len(numbers)} messages")


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the SIGTERMed server still runs {timeout} s later") from None


async def test_sigterm_drains_one_server_and_every_client_gets_every_message_once(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = f"drain{uuid.uuid4().hex[:8]}"
    env = {"ASGI_WS_RESUME_KEYS": secrets.token_urlsafe(32)}
    args = (
        "--broker", f"{redis_url}?history=1000",
        "--session-store", f"{redis_url}?prefix=asgi_ws:session:{namespace}:",
        "--namespace", namespace,
        "--allow-origin", ORIGIN,
        "--rate", "1000",
        "--no-demo",
        "--drain-timeout", str(DRAIN_TIMEOUT),
        "--log-level", "info",
    )  # fmt: skip
    headers = {"Origin": ORIGIN}
    log_path = tmp_path / "first.log"
    events: list[list[Event]] = [[] for _ in range(CLIENTS)]
    with log_path.open("wb") as log, contextlib.ExitStack() as stack:
        first = stack.enter_context(asgi_ws_serve(*args, env=env, stderr=log))
        second = stack.enter_context(asgi_ws_serve(*args, env=env))
        proxy = Proxy(first.port)
        url = f"ws://127.0.0.1:{await proxy.start()}/ws"
        clients: list[Client] = []
        try:
            clients += await asyncio.gather(
                *(connect(url, headers=headers, on_event=events[i].append) for i in range(CLIENTS))
            )
            await asyncio.gather(*(client.subscribe("feed") for client in clients))
            readers = [asyncio.create_task(read_every_message(client)) for client in clients]
            async with connect(second.ws_url("/ws"), headers=headers) as publisher:
                for n in range(1, MESSAGES + 1):
                    await publisher.publish("feed", n)
                    if n == SIGTERM_AT:
                        proxy.backend = second.port  # out of the load balancer, then SIGTERM
                        first.proc.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.005)
            results = await within(asyncio.gather(*readers), 30, "every client reading every message")
            returncode = await wait_exit(first.proc, DRAIN_TIMEOUT + EXIT_MARGIN)
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
            with contextlib.suppress(Exception):
                await proxy.close()
    expected = list(range(1, MESSAGES + 1))
    for i, numbers in enumerate(results):
        assert numbers == expected, f"client {i}: {len(numbers)} messages, first differences at {_diff(numbers)}"
    for i, client_events in enumerate(events):
        ends = [(e.code, e.reason) for e in client_events if e.kind == "disconnected"]
        assert ends[:1] == [(1001, "going away")], f"client {i} ended with {ends}"
        kinds = [e.kind for e in client_events]
        assert "resumed" in kinds and "resume_failed" not in kinds, f"client {i}: {kinds}"
        first_retry = next(e for e in client_events if e.kind == "reconnecting")
        assert first_retry.delay is not None and first_retry.delay <= 0.25  # at once, not the backoff
    text = log_path.read_text()
    assert returncode == 0, f"the SIGTERMed server exited with {returncode}:\n{text}"
    assert "ERROR" not in text and "Traceback" not in text, text
    assert f"drained {CLIENTS} connection(s)" in text and f"{CLIENTS} closed with 1001, 0 still open" in text, text


def _diff(numbers: list[int]) -> str:
    for index, number in enumerate(numbers):
        if number != index + 1:
            return f"position {index}: {numbers[max(0, index - 2) : index + 3]}"
    return f"the end ({len(numbers)})"
