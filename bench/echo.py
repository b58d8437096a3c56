"""Echo throughput through Heartbeat + Backpressure + RateLimit vs the bare endpoint.

``connections`` picows clients each keep ``window`` 100-byte messages in flight and send the
next as each echo returns. Both servers run at once in their own uvicorn processes; rounds
alternate. Reported per uvicorn implementation: messages/s (wall) and server CPU per
message, read from /proc, which the load client cannot distort. Target: the stack keeps at
least 85% of the bare throughput.

    python bench/echo.py [--ws websockets-sansio ...] [--messages 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._clients import Counter, close_all, connect_many, send_text
from bench._util import Comparison, Rounds, ServerProcess, paired_rounds, table, uvicorn_process

PAYLOAD = b'{"type":"chat","room":"lobby","text":"' + b"x" * 50 + b'","n":0000}'


async def one_round(url: str, connections: int, messages: int, window: int) -> float:
    per_conn = messages // connections
    done = asyncio.get_running_loop().create_future()
    finished = 0

    def on_echo(listener: Counter, payload: bytes) -> None:
        nonlocal finished
        sent = listener.count + window
        if sent <= per_conn:
            send_text(listener, PAYLOAD)
        if listener.count == per_conn:
            finished += 1
            if finished == connections and not done.done():
                done.set_result(None)

    listeners = await connect_many(url, connections, lambda: Counter(on_echo))
    start = time.perf_counter()
    for listener in listeners:
        for _ in range(window):
            send_text(listener, PAYLOAD)
    await asyncio.wait_for(done, 300)
    elapsed = time.perf_counter() - start
    close_all(listeners)
    return per_conn * connections / elapsed


async def measure(servers: dict[str, ServerProcess], args: argparse.Namespace) -> Rounds:
    return await paired_rounds(
        servers,
        args.rounds,
        lambda server: one_round(server.ws_url("/"), args.connections, args.messages, args.window),
        args.messages,
        warmup=lambda server: one_round(server.ws_url("/"), args.connections, 5000, args.window),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio", "wsproto", "websockets"])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for ws in args.ws:
        with (
            uvicorn_process("bench.apps:echo_bare", ws=ws) as bare,
            uvicorn_process("bench.apps:echo_stack", ws=ws) as stack,
        ):
            res = asyncio.run(measure({"bare": bare, "stack": stack}, args))
        print(f"{ws}: {res}", file=sys.stderr)
        c = Comparison.of(res)
        rows.append(
            [
                ws,
                f"{c.base_rate:,.0f}",
                f"{c.rate:,.0f}",
                f"{c.wall_ratio:.3f}",
                f"{c.base_cpu_us:.1f}",
                f"{c.cpu_us:.1f}",
                f"{c.paired_capacity_ratio:.3f}",
            ]
        )
    print(
        f"{args.messages:,} messages x {args.rounds} rounds, {args.connections} connections x {args.window} in flight; "
        "medians\n"
    )
    print(
        table(
            [
                "uvicorn --ws",
                "bare msg/s",
                "stack msg/s",
                "wall ratio",
                "bare server CPU µs/msg",
                "stack server CPU µs/msg",
                "paired capacity ratio",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
