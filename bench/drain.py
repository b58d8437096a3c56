"""How long a drain takes: SIGTERM an ``asgi-ws serve`` holding N resumable subscribers.

``asgi-ws serve`` runs in its own process with N picows connections (``?ws_resume=new``, each
subscribed to one channel) while a publisher publishes to it ``--rate`` times a second. The
script sends SIGTERM and measures, per N:

- **drain**: what the server's own log line reports (``drained N connection(s) in X s``):
  from the start of the drain to every application returned and every session's last store
  write done;
- **last close**: from SIGTERM to the last client holding its close frame (client clock;
  includes uvicorn's signal poll, up to 0.1 s);
- **exit**: from SIGTERM to the process's exit, and its exit status;
- the close codes the clients got (1001 expected, 1012 would mean uvicorn closed first), and
  the ERROR lines and tracebacks the server logged after SIGTERM.

    python bench/drain.py [--clients 1000 5000] [--store redis://127.0.0.1:6379/0] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from asgi_ws.cli import parse_args
from bench._util import table
from tests.support.procs import asgi_ws_serve

ORIGIN = "https://bench.example"
SUBSCRIBE = json.dumps({"$ws": "subscribe", "channel": "feed"}).encode()


class Subscriber(WSListener):  # type: ignore[misc]
    """Subscribes once connected; records when and with which code the server closed."""

    def __init__(self) -> None:
        loop = asyncio.get_event_loop()
        self.subscribed = loop.create_future()
        self.closed = loop.create_future()
        self.code: int | None = None
        self.closed_at = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, SUBSCRIBE)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT and b'"subscribed"' in frame.get_payload_as_bytes():
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        elif frame.msg_type == WSMsgType.CLOSE:
            self.code = frame.get_close_code()
            self.closed_at = time.monotonic()
            transport.send_close(self.code)
            transport.disconnect()
            if not self.closed.done():
                self.closed.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed_at = time.monotonic()
            self.closed.set_result(None)


async def publish(url: str, rate: float, stop: asyncio.Event) -> None:
    try:
        transport, _ = await ws_connect(WSListener, url, extra_headers={"Origin": ORIGIN})
    except Exception:
        return
    n = 0
    while not stop.is_set():
        n += 1
        message = json.dumps({"$ws": "publish", "channel": "feed", "data": n}).encode()
        try:
            transport.send(WSMsgType.TEXT, message)
        except Exception:
            return
        await asyncio.sleep(1 / rate)
    transport.disconnect()


def _no_connection_caps() -> tuple[str, ...]:
    """Lift asgi-ws serve's per-IP connection cap where it has one: every client is 127.0.0.1."""
    caps = ("--max-connections", "0", "--max-connections-per-ip", "0")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parse_args(["serve", *caps])
    except SystemExit:
        return ()
    return caps


async def one_run(clients: int, store: str, broker: str, rate: float) -> dict[str, object]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    store_url = store if store == "memory://" else f"{store}?prefix=asgi_ws:bench:{namespace}:"
    args = ("--broker", broker, "--session-store", store_url, "--namespace", namespace, "--allow-origin", ORIGIN,
            "--no-demo", "--rate", "1000", "--log-level", "info")  # fmt: skip
    args += _no_connection_caps()
    env = {"ASGI_WS_RESUME_KEYS": secrets.token_urlsafe(32)}
    log_path = Path(tempfile.mkdtemp(prefix="asgi_ws_drain_")) / "server.log"
    with log_path.open("wb") as log, asgi_ws_serve(*args, env=env, stderr=log) as server:
        url = server.ws_url("/ws?ws_resume=new")
        listeners: list[Subscriber] = []
        for start in range(0, clients, 200):
            pairs = await asyncio.gather(
                *(
                    ws_connect(Subscriber, url, extra_headers={"Origin": ORIGIN})
                    for _ in range(min(200, clients - start))
                )
            )
            listeners += [listener for _, listener in pairs]
        await asyncio.wait_for(asyncio.gather(*(s.subscribed for s in listeners)), 60)
        stop = asyncio.Event()
        publisher = asyncio.create_task(publish(server.ws_url("/ws"), rate, stop))
        await asyncio.sleep(1.0)  # a steady stream is flowing
        log.flush()
        log_offset = log_path.stat().st_size  # what the server logged before SIGTERM is not the drain's
        sent_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(s.closed for s in listeners)), 60)
        last_close = max(s.closed_at for s in listeners) - sent_at
        returncode = await asyncio.to_thread(server.proc.wait, 60)
        exited = time.monotonic() - sent_at
        stop.set()
        await publisher
    text = log_path.read_text()
    after = log_path.read_bytes()[log_offset:].decode(errors="replace")
    found = re.search(r"drained (\d+) connection\(s\) in ([0-9.]+) s: (\d+) closed", text)
    codes = collections.Counter(s.code for s in listeners)
    return {
        "clients": clients,
        "store": store.split(":")[0],
        "drain (server)": f"{float(found.group(2)):.2f} s" if found else "?",
        "last close": f"{last_close:.2f} s",
        "exit": f"{exited:.2f} s (status {returncode})",
        "codes": ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str)),
        "errors after SIGTERM": sum(1 for line in after.splitlines() if "ERROR" in line or "Traceback" in line),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--store", default=os.environ.get("ASGI_WS_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0?history=1000")
    parser.add_argument("--rate", type=float, default=20.0, help="publishes per second during the drain")
    options = parser.parse_args()
    rows = [await one_run(n, options.store, options.broker, options.rate) for n in options.clients]
    print(table(list(rows[0]), [[str(row[key]) for key in rows[0]] for row in rows]))


if __name__ == "__main__":
    asyncio.run(main())
