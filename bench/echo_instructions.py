"""Server instructions per echoed message, counted by valgrind (repeatable on a noisy machine).

Each variant's uvicorn server runs under ``valgrind --tool=callgrind`` twice, serving a small
and a larger echo load from the picows client of ``bench/echo.py``; the difference in
instructions divided by the difference in messages is the server's cost per echoed message,
start-up and connection set-up cancelled out. Instruction counts do not move with other load
on the machine, so ratios of them are the steadiest measure of what a layer costs (time per
instruction differs a little between code paths: report the wall-clock ratio beside it).

    python bench/echo_instructions.py [--ws websockets-sansio] [--apps echo_bare echo_stack]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import table, uvicorn_process
from bench.echo import one_round


def instructions(app: str, ws: str, messages: int) -> int:
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    with uvicorn_process(f"bench.apps:{app}", ws=ws, prefix=valgrind, start_timeout=120, stop_timeout=120) as server:
        if messages:
            asyncio.run(one_round(server.ws_url("/"), 4, messages, 8))
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio"])
    parser.add_argument("--apps", nargs="+", default=["echo_bare", "echo_stack"])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=8000)
    args = parser.parse_args()
    rows = []
    for ws in args.ws:
        per_message = {}
        for app in args.apps:
            small, large = instructions(app, ws, args.small), instructions(app, ws, args.large)
            per_message[app] = (large - small) / (args.large - args.small)
        base = per_message[args.apps[0]]
        for app, cost in per_message.items():
            rows.append([ws, app, f"{cost:,.0f}", f"{cost - base:+,.0f}", f"{base / cost:.3f}"])
    print(table(["uvicorn --ws", "app", "instructions / echoed message", f"vs {args.apps[0]}", "capacity ratio"], rows))


if __name__ == "__main__":
    main()
