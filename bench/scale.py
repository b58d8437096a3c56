"""Scale on one box: heartbeat cost, memory per connection, 50,000 subscribers over workers, a storm.

Load clients run in their own processes (``bench/scale_client.py``, picows), each from its own
source address (127.0.0.2, 127.0.0.3...: loopback routes all of 127/8 locally), so no source
address runs out of ephemeral ports. Subcommands:

``heartbeat``: two ``asgi-ws serve`` processes side by side, each holding ``--connections``
resumable subscribers that said ``hello``; one pings every ``--interval`` seconds, the other
never (an interval of a day). The difference of their CPU over ``--seconds`` divided by the
pong rounds the clients answered is the server CPU per heartbeat round. ``--py-spy DIR``
records the pinging server meanwhile (``--format raw``: collapsed stacks); ``--floor`` adds a
bare uvicorn endpoint's rounds (a frame each way; uvicorn's protocol ping).

``--baseline DIR`` (heartbeat, memory) runs the asgi_ws of another checkout beside this one in
the same run (``git worktree add /tmp/wt <commit>``); ``SCALE_SERVER_PYTHONPATH`` goes first on
the servers' path (a ``sitecustomize`` probe, uvloop installed with ``pip --target``).

``memory``: a bare uvicorn WebSocket endpoint (``bench.apps:idle_bare``) and ``asgi-ws serve``
side by side, ``--connections`` each, after a warm-up of 200: RSS growth per connection, the
asgi-ws connections resumable, subscribed to one channel and heartbeat-armed.

``cluster``: ``asgi-ws serve --workers N`` on one port (Redis broker with history, Redis session
store), ``--connections`` resumable subscribers with heartbeat; then one publish to all of them
(time to the last member, deliveries/s), the heartbeat's CPU, memory per connection, and a
reconnect storm: every worker killed (SIGKILL) and restarted by the supervisor; the clients
reconnect over ``--jitter`` seconds and resume (or are refused, explicitly); presence checked on
the workers; WARNING lines counted. Measured: 50,000 clients on 4 workers, every one resumed.

    python bench/scale.py heartbeat [--connections 10000] [--interval 4] [--seconds 20] [--repeat 3]
                                    [--baseline DIR] [--floor] [--py-spy DIR]
    python bench/scale.py memory [--connections 10000] [--baseline DIR]
    python bench/scale.py cluster [--connections 50000] [--workers 3] [--clients 5] [--jitter 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import ROOT, table
from tests.support.procs import ServerProcess, free_port, server_process, uvicorn_process

ORIGIN = "https://bench.example"
CLIENT = str(Path(__file__).resolve().parent / "scale_client.py")
#: Options of every ``asgi-ws serve`` here: no per-IP or per-process cap (the clients share few addresses).
SERVE = ("--no-demo", "--allow-missing-origin", "--max-connections", "0", "--max-connections-per-ip", "0",
         "--rate", "1000", "--log-level", "warning")  # fmt: skip


def asgi_ws_serve(*args: str, code: Path | None = None, stderr: Any = None, port: int | None = None) -> Any:
    """``asgi-ws serve`` in a child process, running the asgi_ws of ``code`` (a checkout; default:
    this one), so a baseline (``--baseline DIR``, e.g. a ``git worktree`` of the commit before a
    change) runs beside the current code in the same run. ``SCALE_SERVER_PYTHONPATH`` is put
    first on the servers' path (a ``sitecustomize`` probe)."""
    code = (code or ROOT).resolve()
    port = port or free_port()
    path = os.pathsep.join(p for p in (os.environ.get("SCALE_SERVER_PYTHONPATH"), str(code)) if p)
    cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); from asgi_ws.cli import main; "
           "sys.exit(main())", "serve", "--port", str(port), "--log-level", "warning", *args]  # fmt: skip
    return server_process(cmd, port, env={"PYTHONPATH": path}, stderr=stderr, start_timeout=120)


class ClientProcess:
    """One ``scale_client.py`` process, spoken to one JSON line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, source: str) -> None:
        self.proc = proc
        self.source = source

    @classmethod
    async def start(cls, source: str) -> ClientProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, CLIENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 24
        )
        return cls(proc, source)

    async def ask(self, command: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client process {self.source} exited ({self.proc.returncode})")
        return json.loads(line)  # type: ignore[no-any-return]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ask({"op": "close"}, timeout=30)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


@contextlib.asynccontextmanager
async def clients(count: int, first: int = 2) -> AsyncIterator[list[ClientProcess]]:
    """``count`` client processes, from 127.0.0.<first>, 127.0.0.<first+1>..."""
    started = [await ClientProcess.start(f"127.0.0.{first + i}") for i in range(count)]
    try:
        yield started
    finally:
        await asyncio.gather(*(c.close() for c in started))


async def connect(procs: Sequence[ClientProcess], url: str, total: int, **options: Any) -> int:
    """Spread ``total`` connections over ``procs``; return how many opened."""
    share = [total // len(procs) + (1 if i < total % len(procs) else 0) for i in range(len(procs))]
    replies = await asyncio.gather(
        *(
            p.ask({"op": "connect", "url": url, "count": n, "source": p.source, **options})
            for p, n in zip(procs, share, strict=True)
        )
    )
    return sum(r["opened"] for r in replies)


async def stats(procs: Sequence[ClientProcess]) -> dict[str, Any]:
    """The clients' counts summed (``first``: the earliest arrival, ``last``: the latest)."""
    replies = await asyncio.gather(*(p.ask({"op": "stats"}) for p in procs))
    total: dict[str, Any] = {}
    for reply in replies:
        for key, value in reply.items():
            if key == "first":
                total[key] = min([v for v in (total.get(key), value) if v] or [0.0])
            elif key == "last":
                total[key] = max(total.get(key, 0.0), value)
            elif isinstance(value, dict):
                merged = total.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


def _py_spy() -> str:
    """py-spy beside this interpreter (the virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` (schedstat: nanosecond resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def until(predicate: Any, timeout: float, what: str, step: float = 0.5) -> Any:
    """Poll the async ``predicate`` until it returns something true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        await asyncio.sleep(step)


# -- heartbeat ---------------------------------------------------------------------------------


async def heartbeat(args: argparse.Namespace) -> None:
    codes = [("current", ROOT)] + ([("baseline", Path(args.baseline))] if args.baseline else [])
    measured: dict[str, list[tuple[int, float, float]]] = {name: [] for name, _ in codes}
    for repeat in range(args.repeat):
        for name, code in codes if repeat % 2 else codes[::-1]:  # alternate: drift hits both alike
            spy = Path(args.py_spy) / f"heartbeat-{name}.txt" if args.py_spy and repeat == 0 else None
            measured[name].append(await _heartbeat_pair(args, code, spy))
            rounds, active, quiet = measured[name][-1]
            print(f"{name}: {rounds:,} rounds, {(active - quiet) / max(rounds, 1) * 1e6:.1f} µs per round", flush=True)
    rows = []
    for name, code in codes:
        runs = measured[name]
        per_round = sorted((a - q) / max(r, 1) for r, a, q in runs)
        middle = min(runs, key=lambda run: abs((run[1] - run[2]) / max(run[0], 1) - per_round[len(per_round) // 2]))
        label = f"asgi-ws serve, HeartbeatMiddleware ({name}: {_describe(code)})"
        rows.append(_row(args, label, *middle))
    if args.floor:
        rows += await floors(args)
    print(f"\ninterval {args.interval} s, CPU over {args.seconds} s, median of {args.repeat} run(s)\n")
    print(table(HEARTBEAT_COLUMNS, rows))


def _describe(code: Path) -> str:
    """The commit of a checkout, and whether its asgi_ws has uncommitted changes."""
    head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "asgi_ws"], capture_output=True, text=True)
    return head.stdout.strip() + (" + changes" if dirty.stdout.strip() else "")


async def _heartbeat_pair(args: argparse.Namespace, code: Path, spy_out: Path | None) -> tuple[int, float, float]:
    """Pong rounds over ``args.seconds`` and the CPU seconds of the pinging and the silent server."""
    serve = (*SERVE, "--broker", "memory://?history=1000")
    quiet = subprocess.DEVNULL  # the drains' INFO lines at exit
    pinging = asgi_ws_serve(*serve, "--heartbeat-interval", str(args.interval), code=code, stderr=quiet)
    silent = asgi_ws_serve(*serve, "--heartbeat-interval", "86400", code=code, stderr=quiet)
    with pinging as ping_server, silent as silent_server:
        async with clients(2 * args.client_processes) as procs:
            half = len(procs) // 2
            options = {"hello": True, "subscribe": "feed", "resume": True}
            opened = await asyncio.gather(
                connect(procs[:half], ping_server.ws_url("/ws"), args.connections, **options),
                connect(procs[half:], silent_server.ws_url("/ws"), args.connections, **options),
            )
            print(f"opened {opened[0]:,} + {opened[1]:,} connections", flush=True)
            if min(opened) < args.connections:
                print(f"  not all opened: {await stats(procs[:half])} / {await stats(procs[half:])}", flush=True)
            await asyncio.sleep(args.interval * 2)  # the heartbeat rounds are spread over the interval
            spy = None
            if spy_out is not None:
                spy_out.parent.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for after the measurement
                    [_py_spy(), "record", "--pid", str(ping_server.proc.pid), "--duration", str(int(args.seconds)),
                     "--rate", "250", "--format", "raw", "--output", str(spy_out), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            before = (await stats(procs[:half]))["pongs"]
            cpu0 = (cpu_seconds(ping_server.proc.pid), cpu_seconds(silent_server.proc.pid))
            print(f"  measuring from {time.monotonic():.1f}", flush=True)
            await asyncio.sleep(args.seconds)
            cpu1 = (cpu_seconds(ping_server.proc.pid), cpu_seconds(silent_server.proc.pid))
            rounds = (await stats(procs[:half]))["pongs"] - before
            if spy is not None:
                spy.wait(60)
    return rounds, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]


async def _pair_cpu(
    active: ServerProcess, idle: ServerProcess, procs: Sequence[ClientProcess], seconds: float
) -> tuple[float, float, int]:
    """CPU seconds of both servers over ``seconds``, and the data frames the clients got meanwhile."""
    before = (await stats(procs))["data"]
    cpu0 = (cpu_seconds(active.proc.pid), cpu_seconds(idle.proc.pid))
    await asyncio.sleep(seconds)
    cpu1 = (cpu_seconds(active.proc.pid), cpu_seconds(idle.proc.pid))
    return cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], (await stats(procs))["data"] - before


async def floors(args: argparse.Namespace) -> list[list[str]]:
    """What a round costs without asgi_ws: a bare uvicorn echo endpoint answering one small frame
    per connection and interval, and uvicorn's own protocol ping (``--ws-ping-interval``)."""
    rows = []
    with uvicorn_process("bench.apps:echo_bare") as echo, uvicorn_process("bench.apps:idle_bare") as idle:
        async with clients(2) as procs:
            await connect(procs[:1], echo.ws_url("/"), args.connections, send_every=args.interval)
            await connect(procs[1:], idle.ws_url("/"), args.connections)
            await asyncio.sleep(args.interval * 2)
            active, quiet, rounds = await _pair_cpu(echo, idle, procs[:1], args.seconds)
        rows.append(["bare uvicorn endpoint, in-band: one text frame each way", rounds, active, quiet])
    ping = ("--ws-ping-interval", str(args.interval), "--ws-ping-timeout", str(args.interval))
    never = ("--ws-ping-interval", "86400")
    with (
        uvicorn_process("bench.apps:idle_bare", extra=ping) as pinging,
        uvicorn_process("bench.apps:idle_bare", extra=never) as idle,
    ):
        async with clients(2) as procs:
            await connect(procs[:1], pinging.ws_url("/"), args.connections)
            await connect(procs[1:], idle.ws_url("/"), args.connections)
            await asyncio.sleep(args.interval * 2)
            active, quiet, _ = await _pair_cpu(pinging, idle, procs[:1], args.seconds)
        rounds = int(args.connections * args.seconds / args.interval)  # picows answers every protocol ping
        rows.append(["bare uvicorn endpoint, uvicorn's protocol ping (estimated rounds)", rounds, active, quiet])
    return [_row(args, *row) for row in rows]


def _row(args: argparse.Namespace, label: str, rounds: int, active: float, quiet: float) -> list[str]:
    per_round = (active - quiet) / max(rounds, 1) * 1e6
    share = per_round * 50_000 / 20 / 1e6  # of a core, for 50,000 connections at a 20 s interval
    return [label, f"{args.connections:,}", f"{rounds / args.seconds:,.0f}", f"{active / args.seconds * 100:.1f}",
            f"{quiet / args.seconds * 100:.1f}", f"{per_round:.1f}", f"{share * 100:.1f}%"]  # fmt: skip


HEARTBEAT_COLUMNS = ["what pings", "connections", "rounds/s", "active server CPU %", "idle server CPU %",
                     "server CPU µs per round", "50,000 at 20 s: share of a core"]  # fmt: skip


# -- memory ------------------------------------------------------------------------------------


async def memory(args: argparse.Namespace) -> None:
    """RSS growth per connection: bare uvicorn, and ``asgi-ws serve`` (each checkout), in one run."""
    codes = [("current", ROOT)] + ([("baseline", Path(args.baseline))] if args.baseline else [])
    per: dict[str, list[float]] = {"bare": []} | {name: [] for name, _ in codes}
    for repeat in range(args.repeat):
        bare = uvicorn_process("bench.apps:idle_bare", extra=("--ws-ping-interval", "20"))
        with bare as bare_server:
            per["bare"].append(await _rss_per_connection(bare_server, "/", {}, args))
        for name, code in codes if repeat % 2 else codes[::-1]:
            serve = (*SERVE, "--broker", "memory://?history=1000", "--heartbeat-interval", "20")
            with asgi_ws_serve(*serve, code=code, stderr=subprocess.DEVNULL) as server:
                options = {"hello": True, "subscribe": "feed", "resume": True}
                per[name].append(await _rss_per_connection(server, "/ws", options, args))
        print({k: [round(v) for v in vs] for k, vs in per.items()}, flush=True)
    bare_median = _median(per["bare"])
    rows = [["bare uvicorn endpoint (bench.apps:idle_bare), uvicorn's protocol pings", f"{bare_median:,.0f}", "", ""]]
    for name, code in codes:
        value = _median(per[name])
        rows.append([f"asgi-ws serve, resumable + subscribed + heartbeat ({name}: {_describe(code)})",
                     f"{value:,.0f}", f"{value - bare_median:+,.0f}", f"{value / bare_median:.2f}"])  # fmt: skip
    print(f"\n{args.connections:,} connections after 200 warm-up ones, median of {args.repeat} run(s)\n")
    print(table(["server", "bytes per connection", "above bare", "ratio to bare"], rows))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def _rss_per_connection(
    server: ServerProcess, path: str, options: dict[str, Any], args: argparse.Namespace
) -> float:
    async with clients(args.client_processes) as procs:
        await connect(procs, server.ws_url(path), 200, **options)
        await asyncio.sleep(2)
        before = rss_bytes(server.proc.pid)
        opened = await connect(procs, server.ws_url(path), args.connections, **options)
        await asyncio.sleep(args.settle)  # resume renewals, heartbeat timers, presence flushes
        after = rss_bytes(server.proc.pid)
        if opened < args.connections:
            print(f"  only {opened:,} opened", flush=True)
        return (after - before) / max(opened, 1)


# -- cluster -----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _open_files(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return 0


async def _until_answered(
    procs: Sequence[ClientProcess], total: int, before: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Wait until every client is open again and was told ``resumed`` or ``resume_failed``."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await stats(procs)
        answered = (
            counts["resumed"] - before["resumed"] + sum(counts["refused"].values()) - sum(before["refused"].values())
        )
        if (counts["open"] >= total and answered >= total) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


async def _fan_out(procs: Sequence[ClientProcess], marker: str, expected: int, timeout: float) -> dict[str, float]:
    """One publish to every member: time to the last one, deliveries per second."""
    await asyncio.gather(*(p.ask({"op": "mark", "marker": marker}) for p in procs))
    sent = (await procs[0].ask({"op": "publish", "channel": "feed", "data": {"marker": marker}}))["sent"]
    deadline = time.monotonic() + timeout
    counts = await stats(procs)
    while counts["marked"] < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        counts = await stats(procs)
    last = counts["last"] - sent if counts["marked"] else float("nan")
    return {"members": counts["marked"], "expected": expected, "last_s": last, "first_s": counts["first"] - sent,
            "per_second": counts["marked"] / last if last and last > 0 else float("nan")}  # fmt: skip


async def _presence(procs: Sequence[ClientProcess], per_process: int = 6) -> list[int]:
    replies = await asyncio.gather(*(p.ask({"op": "presence", "channel": "feed", "count": per_process}) for p in procs))
    return sorted(n for reply in replies for n in reply["members"])


def _warnings(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith(("WARNING", "ERROR")))


async def cluster(args: argparse.Namespace) -> None:
    """``asgi-ws serve --workers`` on Redis: connect, heartbeat, fan-out, presence, a storm."""
    namespace = f"scale{os.getpid()}"
    port = free_port()
    log = Path(args.log)
    broker = f"{args.redis}?{args.broker_query}"
    store = f"{args.redis}?{args.store_query}" if args.store_query else args.redis
    serve = (*SERVE, "--broker", broker, "--session-store", store, "--namespace", namespace,
             "--heartbeat-interval", str(args.interval), "--workers", str(args.workers),
             "--max-connections", str(args.max_per_worker), "--resume-window", str(args.resume_window),
             "--log-level", "warning")  # fmt: skip
    code = ROOT
    cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); from asgi_ws.cli import main; "
           "sys.exit(main())", "serve", "--port", str(port), *serve]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code), "ASGI_WS_RESUME_KEYS": "bench-scale-cluster-key-0123456789abcdef"}
    results: list[list[str]] = []

    def row(what: str, value: str) -> None:
        results.append([what, value])
        print(f"  {what}: {value}", flush=True)

    with log.open("wb") as out:  # noqa: ASYNC230 - before anything runs
        supervisor = subprocess.Popen(cmd, env=env, stderr=out, stdout=out, cwd=str(code))  # noqa: ASYNC220
    workers: list[int] = []
    try:
        await asyncio.to_thread(_wait_port, port, supervisor)
        workers = await _wait_workers(supervisor.pid, args.workers)
        url = f"ws://127.0.0.1:{port}/ws"
        async with clients(args.clients) as procs:
            options = {"hello": True, "subscribe": "feed", "resume": True, "reconnect": True,
                       "jitter": args.jitter, "timeout": 600}  # fmt: skip
            started = time.monotonic()
            opened = await connect(procs, url, args.connections, **options)
            row("connections opened", f"{opened:,} of {args.connections:,} in {time.monotonic() - started:.0f} s")
            await asyncio.sleep(args.interval)  # the first heartbeat rounds, presence flushes
            per_worker = [_open_files(pid) for pid in workers]
            rss = [rss_bytes(pid) for pid in workers]
            row("open files per worker", ", ".join(f"{n:,}" for n in per_worker))
            row("RSS per worker (MB)", ", ".join(f"{r / 1e6:,.0f}" for r in rss))
            row("workers' RSS / connections (bytes, start-up included)", f"{sum(rss) / max(opened, 1):,.0f}")
            # Heartbeat: every worker's CPU over a window, per pong round the clients answered.
            before = (await stats(procs))["pongs"]
            cpu0 = sum(cpu_seconds(pid) for pid in workers)
            spy = None
            if args.py_spy:  # the first worker, meanwhile
                Path(args.py_spy).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
                spy = subprocess.Popen(  # noqa: ASYNC220 - waited for after the window
                    [_py_spy(), "record", "--pid", str(workers[0]), "--duration", str(int(args.seconds)),
                     "--rate", "100", "--format", "raw", "--output", str(Path(args.py_spy) / "cluster-worker.txt"),
                     "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            await asyncio.sleep(args.seconds)
            if spy is not None:
                await asyncio.to_thread(spy.wait, 60)
            cpu = sum(cpu_seconds(pid) for pid in workers) - cpu0
            rounds = (await stats(procs))["pongs"] - before
            row("heartbeat rounds/s", f"{rounds / args.seconds:,.0f}")
            row("workers' CPU, all of it, while idle but for heartbeats", f"{cpu / args.seconds * 100:.1f}% of a core")
            row("workers' CPU per round (all of their CPU / rounds)", f"{cpu / max(rounds, 1) * 1e6:.0f} µs")
            fan = await _fan_out(procs, "m1", opened - 1, 120)
            row("one publish to all: members reached", f"{fan['members']:,.0f} of {fan['expected']:,}")
            row(
                "one publish to all: first / last member",
                f"{fan['first_s'] * 1000:,.0f} / {fan['last_s'] * 1000:,.0f} ms",
            )
            row("one publish to all: deliveries/s", f"{fan['per_second']:,.0f}")
            seen = await _presence(procs)
            row("presence answers (members), min / max of", f"{min(seen):,} / {max(seen):,} of {len(seen)} answers")
            # The storm: every worker killed; the supervisor restarts them; every client comes back.
            warnings_before = _warnings(log)
            counts_before = await stats(procs)
            killed = time.monotonic()
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            workers = await _wait_workers(supervisor.pid, args.workers, exclude=set(workers))
            counts = await _until_answered(procs, opened, counts_before, args.storm_timeout)
            row("storm: every client open again and answered after", f"{time.monotonic() - killed:.0f} s "
                f"({counts['open']:,} open, {counts['pending']:,} still reconnecting)")  # fmt: skip
            resumed = counts["resumed"] - counts_before["resumed"]
            refused = {k: v - counts_before["refused"].get(k, 0) for k, v in counts["refused"].items()}
            failures = counts["handshake_failures"] - counts_before["handshake_failures"]
            reasons = {k: v - counts_before["reasons"].get(k, 0) for k, v in counts["reasons"].items()}
            print(f"  resume_failed reasons: {reasons}", flush=True)
            row("storm: resumed / refused (by code) / failed attempts (retried)",
                f"{resumed:,} / {refused} / {failures:,}")  # fmt: skip
            await asyncio.sleep(args.presence_wait)
            seen = await _presence(procs)
            row(f"storm: presence {args.presence_wait:.0f} s later, min / max", f"{min(seen):,} / {max(seen):,} "
                f"of {len(seen)} answers")  # fmt: skip
            fan = await _fan_out(procs, "m2", counts["open"] - 1, 120)
            row("after the storm, one publish: members reached / last", f"{fan['members']:,.0f} of {fan['expected']:,}"
                f" / {fan['last_s'] * 1000:,.0f} ms")  # fmt: skip
            row("storm: WARNING/ERROR lines logged", f"{_warnings(log) - warnings_before:,}")
    finally:
        supervisor.send_signal(signal.SIGTERM)  # the workers drain; the supervisor kills the slow ones
        try:
            await asyncio.to_thread(supervisor.wait, 120)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    print(f"\n{args.workers} workers, {args.clients} client processes, heartbeat every {args.interval} s\n")
    print(table(["measure", "value"], results))


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    from tests.support.procs import wait_for_port

    wait_for_port(port, 120, proc)


async def _wait_workers(pid: int, count: int, exclude: set[int] = frozenset(), timeout: float = 120) -> list[int]:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while True:
        found = [c for c in _children(pid) if c not in exclude]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    beat = commands.add_parser("heartbeat", help="server CPU per heartbeat round")
    beat.add_argument("--connections", type=int, default=10_000)
    beat.add_argument("--interval", type=float, default=4.0)
    beat.add_argument("--seconds", type=float, default=20.0)
    beat.add_argument("--client-processes", type=int, default=1, help="per server")
    beat.add_argument("--py-spy", metavar="DIR")
    beat.add_argument("--floor", action="store_true", help="also measure a bare uvicorn endpoint's rounds")
    beat.add_argument("--baseline", metavar="DIR", help="also measure the asgi_ws of this checkout (a worktree)")
    beat.add_argument("--repeat", type=int, default=1, help="runs per code; the table shows the median")
    mem = commands.add_parser("memory", help="server memory per connection, beside a bare uvicorn endpoint")
    mem.add_argument("--connections", type=int, default=10_000)
    mem.add_argument("--client-processes", type=int, default=2)
    mem.add_argument("--settle", type=float, default=5.0, help="seconds after the connects before reading RSS")
    mem.add_argument("--baseline", metavar="DIR", help="also measure the asgi_ws of this checkout (a worktree)")
    mem.add_argument("--repeat", type=int, default=1)
    group = commands.add_parser("cluster", help="asgi-ws serve --workers on Redis: fan-out, heartbeat, a storm")
    group.add_argument("--connections", type=int, default=50_000)
    group.add_argument("--workers", type=int, default=3)
    group.add_argument("--clients", type=int, default=5, help="client processes (127.0.0.2, .3...)")
    group.add_argument("--max-per-worker", type=int, default=17_000, help="--max-connections of each worker")
    group.add_argument("--interval", type=float, default=20.0, help="heartbeat interval")
    group.add_argument("--seconds", type=float, default=40.0, help="the heartbeat's measuring window")
    group.add_argument(
        "--jitter",
        type=float,
        default=100.0,
        help="seconds over which dropped clients reconnect (30 s was too fast for 50,000 resumes on this box: "
        "1,700 a second; the resume window must outlast it)",
    )
    group.add_argument("--storm-timeout", type=float, default=420.0)
    group.add_argument("--presence-wait", type=float, default=15.0, help="seconds after the storm (3 intervals)")
    group.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    group.add_argument(
        "--broker-query",
        default="history=1000&max_connections=64&timeout=30",
        help="the broker URL's query: a reconnect storm reads the room's history once per resume, so its pool "
        "(redis-py's default here: 16 connections, 5 s wait) refused 12,203 of 20,000 resumes with store_unavailable",
    )
    group.add_argument(
        "--store-query", default="max_connections=128&timeout=30", help="the session store URL's query (its pool)"
    )
    group.add_argument(
        "--resume-window", type=float, default=300.0, help="asgi-ws serve --resume-window (longer than --jitter)"
    )
    group.add_argument("--log", default="/tmp/scale-cluster.log", help="the server's log")
    group.add_argument("--py-spy", metavar="DIR", help="record the first worker during the heartbeat window")
    args = parser.parse_args()
    asyncio.run({"heartbeat": heartbeat, "memory": memory, "cluster": cluster}[args.command](args))


if __name__ == "__main__":
    main()
