"""permessage-deflate, measured: bytes on the wire and server CPU per message, and fan-out cost.

Compression is negotiated by uvicorn (``--ws-per-message-deflate``, on by default in uvicorn,
off by default in ``asgi-ws serve``), per connection, with context takeover: each connection
keeps its own compressor, so a broadcast is compressed once per member.

1. **Per message** (``--part wire``): one connection receives a stream of typical JSON
   messages (``~100 B`` trade ticks, ``~1 KB`` chat messages with a profile, ``~10 KB`` lists of
   records; every message different, as in real streams) from a server with compression on
   and one with it off, rounds alternating. Reported: bytes on the wire per message (counted
   on the client's socket, frame headers included), server CPU per message (/proc, all
   threads), and messages/s.
2. **Fan-out** (``--part fanout``): bench/fanout.py's machinery (Rooms on memory://, one
   ~100-byte message per round to N members, rounds alternating between the two servers:
   compression on and off, never more than two 5,000-member servers at once), with client
   workers that offer permessage-deflate (the ``websockets`` client; picows cannot), under
   each uvicorn implementation. Reported: server CPU per delivery (the cost compression adds)
   and time to the last member (client-bound here: Python clients inflating on 2 cores).

    python bench/compression.py                         # both parts, every implementation (~5 min)
    python bench/compression.py --part wire --messages 5000
    python bench/compression.py --part fanout --ws websockets-sansio --n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fanout
from bench._util import ServerProcess, cpu_seconds, free_port, median, table, uvicorn_process

IMPLS = ["websockets-sansio", "websockets", "wsproto"]
SIZES = [100, 1000, 10_000]
VARIANTS = 200  # distinct messages per size, sent in turn

# -- typical JSON payloads ------------------------------------------------------------------------

_TEXT = (
    "the market opened higher as traders weighed new data on prices and rates while the "
    "team shipped a fix for the login page and asked everyone to review the plan before friday "
    "please check the numbers in the report we will meet at noon to discuss next steps"
)
_WORDS = _TEXT.split()
_SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "ORCL", "INTC", "CSCO"]


def _tick(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "type": "trade",
        "symbol": rng.choice(_SYMBOLS),
        "price": round(rng.uniform(10, 900), 2),
        "qty": rng.randint(1, 5000),
        "side": rng.choice(["buy", "sell"]),
        "ts": 1_733_000_000_000 + i * 37,
    }


def _chat(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"{rng.getrandbits(64):016x}",
        "room": "team-" + rng.choice(["alpha", "beta", "gamma"]),
        "author": {"id": rng.randint(1, 10**6), "name": rng.choice(["Ana", "Bo", "Chen", "Dee"]), "avatar": None},
        "sent_at": f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "text": " ".join(rng.choices(_WORDS, k=rng.randint(8, 20))),
        "reactions": [],
    }


def message(size: int, rng: random.Random, i: int) -> str:
    """A JSON text of about ``size`` bytes, different for every ``i``."""
    if size <= 150:
        return json.dumps(_tick(rng, i), separators=(",", ":"))
    if size <= 1500:
        body = _chat(rng, i)
        while len(json.dumps(body)) < size - 40:
            body["reactions"].append({"user": rng.randint(1, 10**6), "emoji": rng.choice(["+1", "heart", "eyes"])})
        return json.dumps(body, separators=(",", ":"))
    items: list[dict[str, Any]] = []
    while len(json.dumps(items)) < size - 160:
        items.append({**_tick(rng, i * 100 + len(items)), "note": " ".join(rng.choices(_WORDS, k=4))})
    return json.dumps({"type": "snapshot", "seq": i, "items": items}, separators=(",", ":"))


MESSAGES = {size: [message(size, random.Random(size * 1000 + i), i) for i in range(VARIANTS)] for size in SIZES}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``send SIZE N``: N messages of about SIZE bytes, then ``done``. (``uvicorn bench.compression:app``)"""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        _, size, count = msg["text"].split()
        variants = MESSAGES[int(size)]
        for i in range(int(count)):
            await send({"type": "websocket.send", "text": variants[i % VARIANTS]})
        await send({"type": "websocket.send", "text": "done"})


# -- part 1: bytes on the wire, CPU per message --------------------------------------------------


class WireClient:
    """A websockets sans-I/O client on a raw socket: counts the bytes the server wrote."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.wire = 0

    async def __aenter__(self) -> WireClient:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.proto = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{self.port}/"), extensions=[ClientPerMessageDeflateFactory()], max_size=None
        )
        self.proto.send_request(self.proto.connect())
        self._flush()
        events: list[Any] = []
        while not events:
            self.proto.receive_data(await self.reader.read(65536))
            events = self.proto.events_received()
        response = events[0]
        self.deflate = "permessage-deflate" in (response.headers.get("Sec-WebSocket-Extensions") or "")
        return self

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.writer.write(data)

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def receive(self, size: int, count: int) -> tuple[int, int]:
        """Ask for ``count`` messages; return (wire bytes, payload bytes) until ``done``."""
        self.proto.send_text(f"send {size} {count}".encode())
        self._flush()
        wire = payload = 0
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                raise RuntimeError("the server closed the connection")
            wire += len(data)
            self.proto.receive_data(data)
            self._flush()
            for frame in self.proto.events_received():
                if frame.data == b"done":
                    return wire, payload
                payload += len(frame.data)


async def wire_part(impls: list[str], messages: int, rounds: int) -> list[list[str]]:
    rows = []
    for ws in impls:
        with contextlib.ExitStack() as stack:
            servers = {
                mode: stack.enter_context(
                    uvicorn_process("bench.compression:app", ws=ws, extra=["--ws-per-message-deflate", flag])
                )
                for mode, flag in (("off", "false"), ("on", "true"))
            }
            clients = {mode: await WireClient(s.port).__aenter__() for mode, s in servers.items()}
            try:
                assert clients["on"].deflate and not clients["off"].deflate, "compression not negotiated as asked"
                for size in SIZES:
                    stats: dict[str, dict[str, list[float]]] = {m: {"wire": [], "cpu": [], "rate": []} for m in servers}
                    for i in range(rounds + 1):  # the first round warms up
                        for mode in ["off", "on"] if i % 2 else ["on", "off"]:
                            before, started = cpu_seconds(servers[mode]), time.perf_counter()
                            wire, payload = await clients[mode].receive(size, messages)
                            elapsed = time.perf_counter() - started
                            if i:
                                stats[mode]["wire"].append(wire / messages)
                                stats[mode]["cpu"].append((cpu_seconds(servers[mode]) - before) / messages * 1e6)
                                stats[mode]["rate"].append(messages / elapsed)
                                stats[mode]["payload"] = [payload / messages]
                    off, on = stats["off"], stats["on"]
                    rows.append([
                        ws, f"{median(off['payload']):,.0f}",
                        f"{median(off['wire']):,.0f}", f"{median(on['wire']):,.0f}",
                        f"{median(on['wire']) / median(off['wire']):.0%}",
                        f"{median(off['cpu']):.1f}", f"{median(on['cpu']):.1f}",
                        f"{median(on['cpu']) / median(off['cpu']):.1f}x",
                        f"{median(off['rate']):,.0f}", f"{median(on['rate']):,.0f}",
                    ])  # fmt: skip
                    print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
            finally:
                for client in clients.values():
                    await client.__aexit__()
    return rows


WIRE_HEADERS = [
    "uvicorn --ws", "JSON payload B", "wire B/msg, off", "wire B/msg, on", "on / off",
    "server CPU µs/msg, off", "server CPU µs/msg, on", "CPU on / off", "msgs/s off", "msgs/s on",
]  # fmt: skip


# -- part 2: fan-out ------------------------------------------------------------------------------


async def _deflate_worker(cfg: dict[str, Any]) -> None:
    """bench/fanout.py's worker protocol (JSON lines), with websockets clients offering deflate."""
    from websockets.asyncio.client import connect

    state: dict[str, Any] = {"tag": "\x00", "target": 0, "count": 0, "first": 0.0, "last": 0.0, "closed": 0}
    done: list[asyncio.Future[None] | None] = [None]

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def read(ws: Any) -> None:
        seen = None
        try:
            async for frame in ws:
                tag = state["tag"]
                if seen is not tag and tag in frame:
                    seen = tag
                    state["count"] += 1
                    if state["count"] == 1:
                        state["first"] = time.time()
                    if state["count"] == state["target"]:
                        state["last"] = time.time()
                        if done[0] is not None and not done[0].done():
                            done[0].set_result(None)
        except Exception:
            pass
        state["closed"] += 1

    members: list[Any] = []
    failures: dict[str, int] = {}
    for url, count in cfg["urls"]:
        for start in range(0, count, cfg["batch"]):
            opened = await asyncio.gather(
                *(
                    connect(url, compression="deflate", max_size=None, ping_interval=None, open_timeout=120)
                    for _ in range(min(cfg["batch"], count - start))
                ),
                return_exceptions=True,
            )
            for ws in opened:
                if isinstance(ws, BaseException):
                    failures[repr(ws)[:160]] = failures.get(repr(ws)[:160], 0) + 1
                else:
                    members.append(ws)
            await asyncio.sleep(cfg["pause"])
    readers = [asyncio.ensure_future(read(ws)) for ws in members]
    deflate = sum("permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "") for ws in members)
    print(f"  worker {os.getpid()}: {len(members)} members, {deflate} with permessage-deflate", file=sys.stderr)
    emit({"ready": len(members), "connected": len(members), "failures": failures})

    loop = asyncio.get_running_loop()
    async for cmd in fanout.commands():
        state.update(tag=f"#{cmd['tag']}#", target=len(members), count=0, first=0.0, last=0.0)
        done[0] = loop.create_future()
        cpu0 = fanout._cpu()
        emit({"armed": True})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(done[0]), cmd["timeout"])
        emit({**{k: state[k] for k in ("count", "first", "last", "closed")}, "cpu": fanout._cpu() - cpu0})
    for ws in members:
        ws.transport.abort()
    for task in readers:
        task.cancel()


class DeflateWorker(fanout.Worker):
    """A client worker process running this script (``--worker``): clients that offer deflate."""

    script = __file__


@contextlib.contextmanager
def rooms_server(ws: str, deflate: bool) -> Iterator[ServerProcess]:
    extra = ["--lifespan", "on", "--backlog", "8192", "--ws-per-message-deflate", "true" if deflate else "false"]
    with uvicorn_process("bench.fanout_servers.rooms_memory:app", ws=ws, port=free_port(), extra=extra) as server:
        yield server


def fanout_part(impls: list[str], n: int, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    counter = iter(range(1, 10**9))
    for ws in impls:
        with rooms_server(ws, False) as off, rooms_server(ws, True) as on:
            systems = [
                fanout.System("rooms-memory", n, [off], worker=DeflateWorker),
                fanout.System("rooms-memory", n, [on], worker=DeflateWorker),
            ]
            print(f"{ws}, N={n}: compression off and on", file=sys.stderr, flush=True)
            asyncio.run(fanout.measure(systems, args, counter))
        result = {mode: fanout.summary(s) for mode, s in zip(("off", "on"), systems, strict=True)}
        cells = [ws, f"{n:,}"]
        for key, fmt in (("server_cpu_us", "{:.1f}"), ("ttl_ms", "{:.0f}"), ("client_cpu_us", "{:.0f}")):
            values = [result[m].get(key) for m in ("off", "on")]
            for value, mode in zip(values, ("off", "on"), strict=True):
                cells.append(fmt.format(value) if value is not None else result[mode]["note"])
            if key == "server_cpu_us" and None not in values:
                cells.append(f"{values[1] / values[0]:.1f}x")  # type: ignore[operator]
        rows.append(cells)
        print(" | ".join(cells), file=sys.stderr, flush=True)
    return rows


FANOUT_HEADERS = [
    "uvicorn --ws", "N", "server CPU µs/delivery, off", "server CPU µs/delivery, on", "on / off",
    "time to last member ms, off", "on", "client CPU µs/delivery, off", "on",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["wire", "fanout", "both"], default="both")
    parser.add_argument("--ws", nargs="+", default=IMPLS, help="uvicorn --ws implementations")
    parser.add_argument("--messages", type=int, default=2000, help="messages per round (wire part)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000, help="members (fan-out part)")
    parser.add_argument("--clients", type=int, default=2, help="client worker processes per server (fan-out part)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    fanout.raise_fd_limit()
    if args.worker:
        asyncio.run(_deflate_worker(json.loads(args.worker)))
        return
    started = time.monotonic()
    out = [f"`python bench/compression.py {' '.join(sys.argv[1:])}`; {fanout.versions()}; {os.cpu_count()} cores.", ""]
    if args.part in ("wire", "both"):
        rows = asyncio.run(wire_part(args.ws, args.messages, args.rounds))
        out += [
            f"Per message: {args.messages} messages a round, {args.rounds} rounds + 1 warm-up, medians.",
            "",
            table(WIRE_HEADERS, rows),
            "",
        ]
    if args.part in ("fanout", "both"):
        measure_args = argparse.Namespace(
            clients=args.clients, batch=100, pause=0.05, warmup=1, rounds=args.rounds, min_rounds=3, budget=40.0,
            round_timeout=30.0, settle=0.3, py_spy=None,
        )  # fmt: skip
        rows = fanout_part(args.ws, args.n, measure_args)
        out += [
            f"Fan-out: Rooms memory://, one ~100-byte message a round to {args.n:,} members (clients offer deflate), "
            f"{args.rounds} rounds + 1 warm-up, compression off and on alternating, medians.",
            "",
            table(FANOUT_HEADERS, rows),
            "",
        ]
    out.append(f"{(time.monotonic() - started) / 60:.1f} min.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
