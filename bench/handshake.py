"""Connection set-up rate through Origin + Auth (signed ticket) + Subprotocol vs the bare endpoint.

Each "connection" is: open the WebSocket (the handshake with an Origin header, a ticket in
the query string and a subprotocol offer), send one message, read the echo, close. Both
servers run in their own uvicorn processes at the same time; rounds alternate between them
so that machine noise hits both alike.

With two cores the load client can be slower than the server, which hides the server's
cost in the wall-clock rate; so the script also reads each server's CPU time from /proc
and reports server CPU per connection, and the capacity it implies (connections per
second of server CPU). The ratio of capacities is the cost of the middlewares.

    python bench/handshake.py [--ws websockets-sansio] [--connections 2000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect

from asgi_ws.auth import SignedTicket
from bench._util import Comparison, Rounds, ServerProcess, paired_rounds, table, uvicorn_process
from bench.handshake_apps import ORIGIN, SECRET


async def one_round(url: str, connections: int, concurrency: int) -> float:
    """Return connections per second for ``connections`` connect-echo-close cycles."""
    remaining = connections
    kwargs = {"origin": ORIGIN, "subprotocols": ["chat.v2"], "compression": None, "open_timeout": 30}

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with connect(url, **kwargs) as ws:
                await ws.send("ping")
                await ws.recv()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return connections / (time.perf_counter() - start)


async def measure(servers: dict[str, ServerProcess], args: argparse.Namespace) -> Rounds:
    ticket = SignedTicket([SECRET], max_age=3600).issue("bench-user")

    def url(server: ServerProcess) -> str:
        return server.ws_url(f"/ws?ticket={ticket}")

    return await paired_rounds(
        servers,
        args.rounds,
        lambda server: one_round(url(server), args.connections, args.concurrency),
        args.connections,
        warmup=lambda server: one_round(url(server), 200, args.concurrency),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio", "wsproto", "websockets"])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    rows = []
    for ws in args.ws:
        with (
            uvicorn_process("bench.handshake_apps:bare", ws=ws) as bare,
            uvicorn_process("bench.handshake_apps:stack", ws=ws) as stack,
        ):
            res = asyncio.run(measure({"bare": bare, "stack": stack}, args))
        c = Comparison.of(res)
        rows.append(
            [
                ws,
                f"{c.base_rate:,.0f}",
                f"{c.rate:,.0f}",
                f"{c.wall_ratio:.3f}",
                f"{c.base_cpu_us:,.0f}",
                f"{c.cpu_us:,.0f}",
                f"{1e6 / c.base_cpu_us:,.0f}",
                f"{1e6 / c.cpu_us:,.0f}",
                f"{c.base_cpu_us / c.cpu_us:.3f}",
                f"{c.paired_capacity_ratio:.3f}",
            ]
        )
        print(f"{ws}: {res}", file=sys.stderr)
    print(f"{args.connections} connections x {args.rounds} rounds, client concurrency {args.concurrency}; medians\n")
    print(
        table(
            [
                "uvicorn --ws",
                "bare conn/s",
                "stack conn/s",
                "wall ratio",
                "bare server CPU µs/conn",
                "stack server CPU µs/conn",
                "bare capacity conn/s",
                "stack capacity conn/s",
                "capacity ratio",
                "paired capacity ratio",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
