"""Instructions per message on the outbound path's hot calls, in process, counted by callgrind.

``Outbound.write_now`` (the application's send) and ``Outbound.offer`` (Rooms' fan-out) on
connections whose server ``send`` completes at once, as uvicorn's does while the socket is
writable: the eager path every message takes while its client keeps up (``_batch``: the same for
clients that asked for batches, one message a loop turn, so each goes alone). Each variant runs
under ``valgrind --tool=callgrind`` twice, with a small and a larger number of messages; the
difference divided by the difference in messages is the cost of one call (start-up cancelled
out). Instruction counts do not move with the machine's load.

    python bench/outbound_instructions.py [--variants offer write_now] [--small 20000] [--large 80000]
    python bench/outbound_instructions.py --tree /tmp/other-checkout   # the same, for another tree's asgi_ws
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = 100  # connections the messages are spread over, round-robin, as a fan-out does
VARIANTS = ["offer", "write_now", "offer_batch", "write_now_batch"]


async def _run(variant: str, messages: int) -> None:
    from asgi_ws.outbound import BatchLimits, Outbound, OutboundTotals, QueueLimits

    writes = 0

    async def send(message: object) -> None:
        nonlocal writes
        writes += 1

    totals = OutboundTotals()
    limits = QueueLimits(max_messages=1000, policy="drop_oldest")
    members = []
    for _ in range(MEMBERS):
        outbound = Outbound(send, lambda code, reason: None)
        outbound.configure(limits, totals)
        if variant.endswith("_batch"):  # a client that asked for batches (one message a turn: none made)
            outbound.start_batching(BatchLimits())
        members.append(outbound)
    message = {"type": "websocket.send", "text": "x" * 100}
    rounds = messages // MEMBERS
    if variant.startswith("offer"):
        for _ in range(rounds):
            for outbound in members:
                outbound.offer(message)
            await asyncio.sleep(0)  # one broadcast a loop turn: every member keeps up
    else:
        for _ in range(rounds):
            for outbound in members:
                outbound.write_now(message)
            await asyncio.sleep(0)
    assert writes == rounds * MEMBERS, (writes, rounds * MEMBERS)


def instructions(tree: Path, variant: str, messages: int) -> int:
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
    cmd += ["--child", variant, str(messages)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True)
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=80_000)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose asgi_ws is measured")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)))
        asyncio.run(_run(args.child[0], int(args.child[1])))
        return
    print("| variant | instructions / message |")
    print("|---|---|")
    for variant in args.variants:
        small = instructions(args.tree, variant, args.small)
        large = instructions(args.tree, variant, args.large)
        print(f"| {variant} | {(large - small) / (args.large - args.small):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
