"""Broadcast to 1,000 members of which one stopped reading: bare serial loop vs BackpressureMiddleware.

The server is ``tests/support/broadcast_app.py`` (a serial loop over the members' ``send``),
bare and behind BackpressureMiddleware (drop_oldest, 64 messages), each in its own uvicorn
process. 999 picows readers (plus, in the "slow" scenarios, one member whose client paused
reading and whose socket buffers were filled first) receive ``--count`` broadcasts of a
~100-byte message; the time is measured until every reader has every message. Target: with
the middleware the 999 stay within 1.2x of the time without a slow member; the bare loop
stalls.

    python bench/slow_broadcast.py [--ws websockets-sansio ...] [--count 10] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picows import ws_connect
from websockets.asyncio.client import connect

from bench._clients import Counter, close_all
from bench._util import ServerProcess, median, table, uvicorn_process

STALL_TIMEOUT = 10.0


def small_buffer_socket(parsed_url: object) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def broadcast_rounds(ctl: object, listeners: list[Counter], count: int, rounds: int) -> list[float | None]:
    """Time ``rounds`` broadcasts of ``count`` messages until every listener has every one (None: stalled)."""
    times: list[float | None] = []
    for _ in range(rounds):
        target = [listener.count + count for listener in listeners]
        start = time.perf_counter()
        await ctl.send(json.dumps({"cmd": "broadcast", "count": count, "size": 100}))  # type: ignore[attr-defined]
        deadline = start + STALL_TIMEOUT
        while time.perf_counter() < deadline:
            if all(listener.count >= t for listener, t in zip(listeners, target, strict=True)):
                times.append(time.perf_counter() - start)
                break
            await asyncio.sleep(0.0005)
        else:
            times.append(None)
            break
        json.loads(await ctl.recv())  # type: ignore[attr-defined]  # the server's "done"
    return times


async def scenario(server: ServerProcess, readers: int, count: int, rounds: int, warmup: int) -> dict[str, list]:
    """In one warmed-up server: rounds without a slow member, with one, and without again."""
    listeners: list[Counter] = []  # each member needs a name of its own: the server keys members by name
    for start in range(0, readers, 200):
        pairs = await asyncio.gather(
            *(ws_connect(Counter, server.ws_url(f"/member?name=r{i}")) for i in range(start, min(readers, start + 200)))
        )
        listeners += [listener for _, listener in pairs]
    ctl = await connect(server.ws_url("/ctl"), compression=None, ping_interval=None)
    await broadcast_rounds(ctl, listeners, count, warmup)
    before = await broadcast_rounds(ctl, listeners, count, rounds)
    slow, _ = await ws_connect(Counter, server.ws_url("/member?name=slow"), socket_factory=small_buffer_socket)
    slow.underlying_transport.pause_reading()
    await ctl.send(json.dumps({"cmd": "fill", "name": "slow"}))
    json.loads(await ctl.recv())
    during = await broadcast_rounds(ctl, listeners, count, rounds)
    after: list[float | None] = []
    if during and during[-1] is not None:  # (a stalled server is left as it is)
        slow.disconnect()
        await asyncio.sleep(0.5)
        after = await broadcast_rounds(ctl, listeners, count, rounds)
    close_all(listeners)
    slow.disconnect()
    return {"without": before + after, "with": during}


def describe(times: list[float | None]) -> str:
    done = [t for t in times if t is not None]
    if not times or len(done) < len(times):
        return f"stalled (nothing more within {STALL_TIMEOUT:.0f} s)"
    return f"{median(done) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio", "wsproto", "websockets"])
    parser.add_argument("--readers", type=int, default=999)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for ws in args.ws:
        results = {}
        for app in ("bare", "drop_oldest"):
            with uvicorn_process(f"tests.support.broadcast_app:{app}", ws=ws) as server:
                results[app] = asyncio.run(scenario(server, args.readers, args.count, args.rounds, args.warmup))
        mw = results["drop_oldest"]
        ratio = median(mw["with"]) / median(mw["without"]) if None not in mw["with"] else float("nan")
        rows.append(
            [
                ws,
                describe(results["bare"]["without"]),
                describe(results["bare"]["with"]),
                describe(mw["without"]),
                describe(mw["with"]),
                f"{ratio:.2f}",
            ]
        )
        print(f"{ws}: {results}", file=sys.stderr)
    print(
        f"{args.readers} readers, {args.count} broadcasts of ~100 bytes per round; per server, {args.warmup} "
        f"warm-up rounds, then {args.rounds} rounds without a slow member, {args.rounds} with one, and (when not "
        f"stalled) {args.rounds} without again; time until every reader has every message (median)\n"
    )
    print(
        table(
            [
                "uvicorn --ws",
                "bare, no slow member",
                "bare, 1 slow member",
                "middleware, no slow member",
                "middleware, 1 slow member",
                "slow / no slow (middleware)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
