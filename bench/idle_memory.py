"""Server memory per idle connection at 5,000 connections: bare vs the asgi_ws stacks.

Each server runs in its own uvicorn process. After a warm-up of 100 connections (imports,
first allocations), ``--connections`` more are opened with picows and left idle; the
server's RSS growth divided by their number is the memory per connection. Clients that
say ``hello`` arm the heartbeat timer too. Target: the full stack adds at most 4 KiB per
connection over bare.

    python bench/idle_memory.py [--ws websockets-sansio ...] [--connections 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_ws.auth import SignedTicket
from bench._clients import close_all, connect_many, send_text
from bench._util import ServerProcess, table, uvicorn_process
from bench.apps import ORIGIN, SECRET

VARIANTS = [
    ("idle_bare", "bare endpoint", False),
    ("idle_stack", "Heartbeat + Backpressure + RateLimit", False),
    ("idle_stack", "same, clients opted in (hello: heartbeat armed)", True),
    ("idle_full", "+ Origin + Auth (ticket) + Subprotocol, opted in", True),
]


async def measure(server: ServerProcess, count: int, hello: bool) -> float:
    ticket = SignedTicket([SECRET], max_age=3600).issue("bench-user")
    url = server.ws_url(f"/?ticket={ticket}")
    headers = {"Origin": ORIGIN}
    warm = await connect_many(url, 100, headers=headers)
    await asyncio.sleep(1)
    before = server.rss_bytes()
    conns = await connect_many(url, count, headers=headers)
    if hello:
        for listener in conns:
            send_text(listener, b'{"$ws":"hello","v":1}')
    await asyncio.sleep(2)
    after = server.rss_bytes()
    close_all(conns + warm)
    await asyncio.sleep(0.5)
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio", "wsproto", "websockets"])
    parser.add_argument("--connections", type=int, default=5000)
    args = parser.parse_args()
    rows = []
    for ws in args.ws:
        bare = None
        for app, label, hello in VARIANTS:
            with uvicorn_process(f"bench.apps:{app}", ws=ws) as server:
                per_conn = asyncio.run(measure(server, args.connections, hello))
            bare = per_conn if bare is None else bare
            rows.append([ws, label, f"{per_conn / 1024:.1f}", f"{(per_conn - bare) / 1024:+.1f}"])
            time.sleep(0.5)
    print(f"{args.connections:,} idle connections per server; RSS growth after a 100-connection warm-up\n")
    print(table(["uvicorn --ws", "server", "KiB per connection", "added vs bare (KiB)"], rows))


if __name__ == "__main__":
    main()
