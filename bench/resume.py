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

3. **Room replay** (``--room-replay``): a resumable member of a room on a Redis history broker
   misses 1,000 room messages (its connection dropped), then resumes: the same timing, the
   messages now numbered from the room's history rather than stored per session.
4. **Handshake burst** (``--burst N``): N resumable clients connect at once to one server on the
   Redis store and join a room once they have their session; how many got a session, how many
   ``resume_failed``/``store_unavailable`` (the store's connection pool exhausted), the time
   until every one had its answer, and what the server logged. Run it with the pool's options in
   the store URL (``--burst-store-options 'max_connections=32&timeout=5'``, the defaults before)
   to compare.

The load client is picows (C-speed), one process.

    python bench/resume.py [--messages 20000] [--rounds 7] [--replay 1000] [--ws websockets-sansio]
    python bench/resume.py --room-replay 1000 --rounds 7
    python bench/resume.py --burst 5000 [--burst-store-options 'max_connections=32&timeout=5']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
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


class Answer(WSListener):  # type: ignore[misc]
    """Waits for the first control message of a resumable connection (session or resume_failed)."""

    def __init__(self) -> None:
        self.first = asyncio.get_event_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT and not self.first.done():
            payload = frame.get_payload_as_bytes()
            if payload.startswith(CONTROL):
                control = json.loads(payload)
                self.first.set_result(control.get("code") or control["$ws"])
                transport.send(WSMsgType.TEXT, b"join")  # a membership to record, as a subscriber's

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.first.done():
            self.first.set_result("disconnected")


async def burst(count: int, options: str, ws: str) -> None:
    """``count`` resumable handshakes at once against the Redis store, each joining a room once
    it has its session: the answers, how long, and what the server logged."""
    prefix = f"asgi_ws_bench_{uuid.uuid4().hex[:8]}:"
    store = f"{REDIS}?prefix={prefix}" + (f"&{options}" if options else "")
    env = {**os.environ, "ASGI_WS_BENCH_STORE": store}
    with tempfile.TemporaryFile("w+") as log:
        with uvicorn_process("bench.resume_app:app", ws=ws, env=env, extra=["--backlog", "8192"], stderr=log) as server:
            start = time.perf_counter()
            pairs = await asyncio.gather(
                *(ws_connect(Answer, server.ws_url("/?ws_resume=new")) for _ in range(count)), return_exceptions=True
            )
            connected = [pair for pair in pairs if not isinstance(pair, BaseException)]
            answers = await asyncio.wait_for(asyncio.gather(*(listener.first for _, listener in connected)), 120)
            elapsed = time.perf_counter() - start
            await asyncio.sleep(1.0)  # the joins' store writes
            for transport, _ in connected:
                transport.disconnect()
        log.seek(0)
        lines = log.read().splitlines()
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    rows = [[name, f"{n:,}"] for name, n in sorted(counts.items())]
    if count > len(connected):
        rows.append(["handshake failed", f"{count - len(connected):,}"])
    print(f"\nBurst of {count:,} resumable handshakes, store options {options or '(defaults)'}\n")
    print(table(["answer", "connections"], rows))
    opened = [line for line in lines if "could not open a resumable session" in line]
    tracebacks = sum("Traceback" in line for line in lines)
    print(f"\nevery answer within {elapsed:.2f} s; the server logged {len(opened)} line(s) 'could not open a "
          f"resumable session' and {tracebacks} traceback(s)")  # fmt: skip
    for line in opened[:2]:
        print("  ", line[:200])


async def room_replay_round(server: ServerProcess, count: int, observed: bool) -> float:
    """Seconds from reconnecting to holding the ``count``-th missed room message (Redis history):
    the member got one room message (its run is open), then its connection dropped. ``observed``:
    another member stays in the room on the server, which then keeps the room's newest messages
    (``Rooms(recent=...)``) and replays from memory; else from the broker's history."""
    observer = None
    if observed:
        observer_url = server.ws_url("/")
        _, observer = await ws_connect(lambda: Reader(10**9), observer_url)
        observer.transport.send(WSMsgType.TEXT, b"join")
    _, member = await ws_connect(lambda: Reader(2), server.ws_url("/?ws_resume=new"))
    await member.first_control
    _, publisher = await ws_connect(lambda: Reader(2), server.ws_url("/"))
    member.transport.send(WSMsgType.TEXT, b"join")  # "joined", then the first room message
    await asyncio.sleep(0.1)
    publisher.transport.send(WSMsgType.TEXT, b"publish 1")
    await asyncio.wait_for(member.done, 10)
    token = member.token
    member.transport.disconnect()  # drop the TCP connection
    publisher.transport.send(WSMsgType.TEXT, f"publish {count}".encode())
    await asyncio.wait_for(publisher.done, 30)  # "published" twice: every message is in the history
    start = time.perf_counter()
    _, again = await ws_connect(lambda: Reader(count), server.ws_url(f"/?ws_resume={quote(token or '')}&ws_seq=2"))
    end = await asyncio.wait_for(again.done, 30)
    for reader in (again, publisher, *([observer] if observer is not None else [])):
        reader.transport.send_close(1000)
        reader.transport.disconnect()
    return end - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--replay", type=int, default=1000)
    parser.add_argument("--room-replay", type=int, default=0, help="measure this replay of room messages instead")
    parser.add_argument("--burst", type=int, default=0, help="measure this many handshakes at once instead")
    parser.add_argument("--burst-store-options", default="", help="redis-py options of the store URL (a&b=c)")
    parser.add_argument("--ws", default="websockets-sansio")
    args = parser.parse_args()
    if args.burst:
        await burst(args.burst, args.burst_store_options, args.ws)
        return
    if args.room_replay:
        env = {
            **os.environ,
            "ASGI_WS_BENCH_STORE": f"{REDIS}?prefix=asgi_ws_bench_{uuid.uuid4().hex[:8]}:",
            "ASGI_WS_BENCH_BROKER": f"{REDIS}?prefix=asgi_ws_bench_{uuid.uuid4().hex[:8]}:&history=10000",
        }
        times: dict[bool, list[float]] = {True: [], False: []}
        with uvicorn_process("bench.resume_app:app", ws=args.ws, env=env) as server:
            for observed in (True, False):
                await room_replay_round(server, args.room_replay, observed)  # warm-up
            for _ in range(args.rounds):  # alternating
                for observed in (True, False):
                    times[observed].append(await room_replay_round(server, args.room_replay, observed))
        what = f"{args.room_replay:,} missed room messages (Redis store, Redis history)"
        print(f"\nReplay of {what}, {args.rounds} rounds each\n")
        rows = [[
            "from the process's memory (the room has members there)" if observed else "from the broker's history",
            f"{median(ts) * 1000:.1f}", f"{min(ts) * 1000:.1f}", f"{max(ts) * 1000:.1f}",
            f"{args.room_replay / median(ts):,.0f}",
        ] for observed, ts in times.items()]  # fmt: skip
        print(table(["read", "median ms", "min ms", "max ms", "messages/s"], rows))
        return
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
