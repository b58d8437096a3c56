"""Shared helpers of the benchmark scripts: servers in their own processes (tests.support.procs), summaries."""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.procs import ServerProcess, free_port, uvicorn_process, wait_for_port  # noqa: E402

__all__ = [
    "ROOT",
    "Comparison",
    "ServerProcess",
    "cpu_seconds",
    "free_port",
    "median",
    "paired_rounds",
    "table",
    "uvicorn_process",
    "wait_for_port",
]

Rounds = dict[str, dict[str, list[float]]]


async def paired_rounds(
    servers: dict[str, ServerProcess],
    rounds: int,
    run: Callable[[ServerProcess], Awaitable[float]],
    units: int,
    warmup: Callable[[ServerProcess], Awaitable[float]] | None = None,
) -> Rounds:
    """Alternate ``rounds`` rounds between the servers, so machine noise hits them alike.

    Per server and round: the rate ``run`` returns, and the server's CPU per unit of work
    (``units`` per round) in microseconds, read from /proc, which the load client cannot
    distort.
    """
    results: Rounds = {name: {"rate": [], "cpu_us": []} for name in servers}
    for server in servers.values():
        await (warmup or run)(server)
    for _ in range(rounds):
        for name, server in servers.items():
            before = server.cpu_seconds()
            results[name]["rate"].append(await run(server))
            results[name]["cpu_us"].append((server.cpu_seconds() - before) / units * 1e6)
    return results


@dataclass
class Comparison:
    """Medians of a baseline and a candidate from :func:`paired_rounds`."""

    base_rate: float
    rate: float
    base_cpu_us: float
    cpu_us: float
    paired_capacity_ratio: float  # median over rounds of base CPU / candidate CPU

    @classmethod
    def of(cls, results: Rounds, base: str = "bare", other: str = "stack") -> Comparison:
        b, o = results[base], results[other]
        paired = median([x / y for x, y in zip(b["cpu_us"], o["cpu_us"], strict=True)])
        return cls(median(b["rate"]), median(o["rate"]), median(b["cpu_us"]), median(o["cpu_us"]), paired)

    @property
    def wall_ratio(self) -> float:
        return self.rate / self.base_rate


def cpu_seconds(server: ServerProcess) -> float:
    """CPU seconds of every thread of ``server``, from /proc/<pid>/task/*/schedstat (ns resolution,
    where ``ServerProcess.cpu_seconds`` has the 10 ms of /proc/<pid>/stat)."""
    total = 0
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
