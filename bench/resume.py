"""Session resumption: what it costs live, and how fast a reconnecting client catches up.

Two measurements, each side by side in one run:

1. **Live throughput** of one connection receiving ``--messages`` ~100-byte messages as fast
   as the app sends them (``bench/resume_app.py``, BackpressureMiddleware ``block``): a plain
   client (no resumption: the baseline) against resumable sessions on the memory store and
   on the Redis store, rounds alternating. Messages per second (client wall clock) and the
   server's CPU per message (from /proc/<pid>/task/*/schedstat). Target: resumption costs at most 20% of live
   throughput.
2. **Replay** of 1,000 missed messages from the Redis store: a client opens a session, asks
   for 1,000 messages and drops its TCP connection at once; once the server has stored them
   all, the client reconnects with its token and ``ws_seq=0``; the time from starting the
   reconnection to holding the 1,000th replayed message.

The load client is picows (C-speed), one process.

    python bench/resume.py [--messages 20000] [--rounds 7] [--replay 1000] [--ws websockets-sansio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench._util import ServerProcess, cpu_seconds, median, table, uvicorn_process

REDIS = os.environ.get("ASGI_WS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CONTROL = b'{"$ws"'


class Reader(WSListener):  # type: ignore[misc]
    """Counts data frames (control frames apart); records the session token."""

    def __init__(self, target: int) -> None:
        self.data = 0
        self.target = target
        self.token: str | None = None
        self.transport: WSTransport | None = None
        self.done = asyncio.get_event_loop().create_future()
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())  # a dropped reader is not an error
        self.first_control = asyncio.get_event_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if payload.startswith(CONTROL):
                control = json.loads(payload)
                self.token = control.get("token", self.token)
                if not self.first_control.done():
                    self.first_control.set_result(control)
                return
            self.data += 1
            if self.data >= self.target and not self.done.done():
                self.done.set_result(time.perf_counter())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("disconnected before the last message"))


async def live_round(server: ServerProcess, query: str, messages: int) -> tuple[float, float]:
    """Messages per second, and server CPU microseconds per message, for one connection."""
    _, reader = await ws_connect(lambda: Reader(messages), server.ws_url(f"/{query}"))
    if query:
        await reader.first_control  # the session exists before timing starts
    cpu = cpu_seconds(server)
    start = time.perf_counter()
    reader.transport.send(WSMsgType.TEXT, f"emit {messages}".encode())
    end = await asyncio.wait_for(reader.done, 60)
    cpu_us = (cpu_seconds(server) - cpu) / messages * 1e6
    reader.transport.send_close(1000)
    reader.transport.disconnect()
    return messages / (end - start), cpu_us


async def replay_round(server: ServerProcess, count: int, prefix: str, redis: aioredis.Redis) -> float:
    """Seconds from reconnecting to holding the ``count``-th replayed message."""
    _, first = await ws_connect(lambda: Reader(count), server.ws_url("/?ws_resume=new"))
    session = await first.first_control
    first.transport.send(WSMsgType.TEXT, f"emit {count}".encode())
    first.transport.disconnect()  # drop the TCP connection at once
    key = f"{prefix}{{{session['id']}}}:m"
    deadline = time.monotonic() + 30
    while int(await redis.hget(key, "head") or 0) < count:  # the server stores what it cannot send
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not store the messages within 30 s")
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    url = server.ws_url(f"/?ws_resume={quote(session['token'])}&ws_seq=0")
    _, again = await ws_connect(lambda: Reader(count), url)
    end = await asyncio.wait_for(again.done, 30)
    again.transport.send_close(1000)
    again.transport.disconnect()
    return end - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--replay", type=int, default=1000)
    parser.add_argument("--ws", default="websockets-sansio")
    args = parser.parse_args()
    prefix = f"asgi_ws_bench_{uuid.uuid4().hex[:8]}:"
    env_memory = {**os.environ, "ASGI_WS_BENCH_STORE": "memory://"}
    env_redis = {**os.environ, "ASGI_WS_BENCH_STORE": f"{REDIS}?prefix={prefix}"}
    redis = aioredis.Redis.from_url(REDIS)
    try:
        with (
            uvicorn_process("bench.resume_app:app", ws=args.ws, env=env_memory) as memory,
            uvicorn_process("bench.resume_app:app", ws=args.ws, env=env_redis) as shared,
        ):
            modes = {
                "off (plain client)": (memory, ""),
                "on, memory store": (memory, "?ws_resume=new"),
                "on, Redis store": (shared, "?ws_resume=new"),
            }
            for server, query in modes.values():  # warm-up
                await live_round(server, query, args.messages // 4)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
            for i in range(args.rounds):
                order = list(modes.items())
                order = order[i % len(order) :] + order[: i % len(order)]  # rotate who goes first
                for name, (server, query) in order:
                    results[name].append(await live_round(server, query, args.messages))
            await replay_round(shared, args.replay, prefix, redis)  # warm-up
            replays = [await replay_round(shared, args.replay, prefix, redis) for _ in range(args.rounds)]
    finally:
        await redis.aclose()

    base = median([r for r, _ in results["off (plain client)"]])
    base_cpu = median([c for _, c in results["off (plain client)"]])
    rows = []
    for name, values in results.items():
        rate, cpu = median([r for r, _ in values]), median([c for _, c in values])
        rows.append([name, f"{rate:,.0f}", f"{rate / base:.2f}", f"{cpu:.2f}", f"{base_cpu / cpu:.2f}"])
    print(f"\nLive throughput, one connection, {args.messages:,} messages of ~100 bytes, "
          f"median of {args.rounds} rounds (uvicorn --ws {args.ws})\n")  # fmt: skip
    print(table(["resumption", "messages/s", "ratio to off", "server CPU µs/message", "capacity ratio"], rows))
    print(f"\nReplay of {args.replay:,} missed messages from the Redis store, {args.rounds} rounds\n")
    print(table(["median ms", "min ms", "max ms", "messages/s"], [[
        f"{median(replays) * 1000:.1f}", f"{min(replays) * 1000:.1f}", f"{max(replays) * 1000:.1f}",
        f"{args.replay / median(replays):,.0f}"]]))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
