"""A reconnect storm: 500 Python clients lose their server at once and come back spread out.

The server process is killed under 500 resumable sessions (Redis store) and a new one is
started on the same port; every client must resume its session (no resume_failed, nothing
lost), the reconnection attempts must be spread by the full jitter rather than arrive
together, and the server must log no error.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import signal
import statistics
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from asgi_ws.client import Backoff, Client, Event, connect
from tests.support.procs import free_port, uvicorn_process

CLIENTS = 500
BACKOFF = Backoff(base=0.5, cap=4.0)


async def test_500_clients_dropped_at_once_resume_spread_out_by_the_jitter(redis_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ASGI_WS_TEST_STORE": f"{redis_url}?prefix=asgi_ws_storm_{uuid.uuid4().hex[:8]}:",
        "ASGI_WS_TEST_NS": f"storm{uuid.uuid4().hex[:8]}",
    }
    log = Path(tempfile.mkdtemp(prefix="asgi_ws_storm_")) / "server.log"
    events: list[tuple[float, int, Event]] = []
    loop = asyncio.get_running_loop()

    def recorder(i: int) -> object:
        return lambda event: events.append((loop.time(), i, event))

    with log.open("w") as server_log:
        with uvicorn_process("tests.resume.resume_app:app", port=port, env=env, stderr=server_log) as first:
            clients: list[Client] = []
            for start in range(0, CLIENTS, 100):  # open in batches: the accept backlog is finite
                clients += await asyncio.gather(
                    *(
                        connect(f"ws://127.0.0.1:{port}/", backoff=BACKOFF, on_event=recorder(i), open_timeout=30)
                        for i in range(start, start + 100)
                    )
                )
            for client in clients:
                await client.send("emit 1 4")
            for client in clients:
                assert [await client.recv() for _ in range(3)] == ["1", "2", "3"]
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            dropped_at = loop.time()
        try:
            with uvicorn_process("tests.resume.resume_app:app", port=port, env=env, stderr=server_log):
                async with asyncio.timeout(60):
                    while len({i for _, i, e in events if e.kind == "resumed"}) < CLIENTS:
                        await asyncio.sleep(0.05)
                for client in clients:  # every session still works, numbered where it left off
                    await client.send("emit 4 5")
                for client in clients:
                    assert await client.recv() == "4"
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    kinds = Counter(e.kind for _, _, e in events)
    assert kinds["resume_failed"] == 0 and kinds["gave_up"] == 0, kinds
    assert kinds["resumed"] == CLIENTS

    # The attempts were spread by the jitter: the first delays the clients drew cover their
    # range evenly, and the returns do not bunch up (without jitter all 500 would come back
    # within a few milliseconds of each other).
    first_delays = [e.delay for _, _, e in events if e.kind == "reconnecting" and e.attempt == 1]
    assert len(first_delays) >= CLIENTS * 0.9
    bound = BACKOFF.base
    assert min(first_delays) < 0.1 * bound and max(first_delays) > 0.9 * bound
    assert statistics.pstdev(first_delays) > 0.2 * bound  # uniform(0, b) has 0.29 b
    attempts = sorted(
        t + e.delay - dropped_at for t, _, e in events if e.kind == "reconnecting" and e.delay is not None
    )
    # First attempts are uniform over `bound` seconds: a 50 ms window holds about a tenth.
    peak = max(bisect.bisect_right(attempts, t + bound / 10) - i for i, t in enumerate(attempts))
    assert peak <= len(attempts) // 4, f"{peak} of {len(attempts)} attempts within {bound / 10:g} s"
    returns = [t - dropped_at for t, _, e in events if e.kind == "resumed"]
    assert max(returns) - min(returns) > bound / 2  # the returns themselves are spread too

    server_errors = [line for line in log.read_text().splitlines() if "ERROR" in line or "Traceback" in line]
    assert server_errors == []
