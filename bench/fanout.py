"""Fan-out: one ~100-byte text message broadcast to N WebSocket members, side by side in one run.

Systems (servers in ``bench/fanout_servers/``, each in its own uvicorn process(es) on 127.0.0.1):

- ``bare``: a Starlette endpoint's list of WebSockets, ``for ws in members: await ws.send_text(msg)`` (the ceiling);
- ``rooms-memory``: ``asgi_ws.Rooms("memory://")``, set up as docs/rooms.md says (lifespan, BackpressureMiddleware);
- ``rooms-redis``: ``Rooms("redis://127.0.0.1:6379/0?prefix=<unique>")``, members split over 2 uvicorn
  processes, the publish made in one of them;
- ``rooms-amqp``: the same on RabbitMQ, ``Rooms("amqp://guest:guest@127.0.0.1:5672/?exchange=<unique>")``
  (run on request: ``--systems rooms-redis rooms-amqp`` compares the two brokers, rounds alternating);
- ``rooms-resume-memory`` / ``rooms-resume-redis``: Rooms whose members are resumable sessions
  (ResumeMiddleware) on the memory / Redis session store, the room on a history broker
  (``memory://?history=10000`` / ``redis://...?history=10000``, one process);
- ``rooms-memory-batch``: ``rooms-memory`` whose clients ask for batch frames in ``hello`` (docs/protocol.md,
  "Batches"); the load client counts every message inside a batch, and reports the batch sizes;
- ``socketio``: python-socketio room emit (members are raw Engine.IO v4 clients);
- ``channels-memory`` / ``channels-redis`` / ``channels-pubsub``: Django Channels ``group_send`` on
  InMemoryChannelLayer / channels_redis RedisChannelLayer / RedisPubSubChannelLayer (one process);
- ``channels-layer-memory`` / ``channels-layer-redis``: the same Channels consumers and ``group_send`` on
  asgi_ws's BrokerChannelLayer, memory:// (one process) / Redis (members over 2 processes, the
  ``group_send`` made in one). Each runs paired with ``rooms-memory`` / ``rooms-redis`` when both are
  selected (at most two 5,000-member systems connected at once); ``-nodb``: the same, the consumers'
  dispatch without Channels' per-message ``aclose_old_connections()`` thread hop (what that hop costs);
  ``-lean``: the same consumers with ``LeanDispatchMixin`` (paired with the Rooms system like the
  stock ones: select one layer system per Rooms system in a run).

The load side is picows (C-speed) in ``--clients`` worker processes per system, each holding its
share of the N members. A round: every worker is armed with the round's tag, the coordinator reads
the wall clock (``time.time()``, shared by the processes of one machine) and sends ``GET /trigger``;
each worker reports the wall time at which its last member received the message, its first, and
its own CPU time over the round (getrusage). Time to last member = max over workers - trigger time;
deliveries/s = N / median time to last member; with ``--burst K``, each round is K broadcasts back to back
(sustained throughput: deliveries/s = N x K / median time until the last member has all K). ``bare``,
``rooms-memory``, ``rooms-memory-batch`` and ``rooms-redis`` stay
connected together and alternate round by round (their ratios are the targets); the peers run one
after the other. Server CPU per delivery is read from /proc/<pid>/task/*/schedstat (ns resolution).

Targets (N = 5,000): Rooms memory >= 0.9x bare; Rooms redis (2 processes) >= 0.7x bare; Rooms >= 10x
channels_redis group_send and >= 5x python-socketio room emit, in deliveries/s. BrokerChannelLayer:
>= 10x RedisPubSubChannelLayer on Redis, within 3x of Rooms on the same broker. Batching: with
``--burst 100``, Rooms to clients asking for batches >= 1.5x the bare loop; with one broadcast, their
time to the last member within 1.1x of the same Rooms without batches.

    python bench/fanout.py                       # N = 1,000 and 5,000, 7 rounds + 1 warm-up, ~10 min
    python bench/fanout.py --systems rooms-memory rooms-redis channels-layer-memory channels-layer-redis \
        channels-layer-memory-nodb channels-layer-redis-nodb channels-pubsub channels-redis channels-memory
    python bench/fanout.py --quick               # 3 rounds, shorter budgets
    python bench/fanout.py --ws wsproto --n 5000 --systems bare rooms-memory
    python bench/fanout.py --write               # also write bench/results/fanout.md and docs/fanout.png
    python bench/fanout.py --n 5000 --burst 100 --systems bare rooms-memory-batch   # sustained, batching
    python bench/fanout.py --n 5000 --systems rooms-memory rooms-memory-batch       # one broadcast
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import ROOT, ServerProcess, cpu_seconds, free_port, median, table, uvicorn_process

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SYSTEMS = [
    "bare",
    "rooms-memory",
    "rooms-redis",
    "socketio",
    "channels-memory",
    "channels-redis",
    "channels-pubsub",
    "rooms-resume-memory",
    "rooms-resume-redis",
    "channels-layer-memory",
    "channels-layer-redis",
    "channels-layer-memory-nodb",
    "channels-layer-redis-nodb",
    "rooms-amqp",
    "rooms-memory-batch",
    "channels-layer-memory-lean",
    "channels-layer-redis-lean",
]
DEFAULT_SYSTEMS = SYSTEMS[:7]  # the resumable-member and BrokerChannelLayer variants run on request (--systems)
# Connected together, rounds alternate.
PAIRED = [
    "bare",
    "rooms-memory",
    "rooms-memory-batch",
    "rooms-redis",
    "rooms-resume-memory",
    "rooms-resume-redis",
    "rooms-amqp",
]
# BrokerChannelLayer systems run paired with the Rooms system on the same broker (taken out of PAIRED).
LAYER_PAIRS = {
    "channels-layer-memory": "rooms-memory",
    "channels-layer-redis": "rooms-redis",
    "channels-layer-memory-lean": "rooms-memory",
    "channels-layer-redis-lean": "rooms-redis",
}
LABELS = {
    "bare": "bare Starlette loop (ceiling)",
    "rooms-memory": "asgi_ws Rooms, memory://",
    "rooms-redis": "asgi_ws Rooms, redis:// (2 processes)",
    "socketio": "python-socketio room emit",
    "channels-memory": "Channels group_send, InMemoryChannelLayer",
    "channels-redis": "Channels group_send, channels_redis RedisChannelLayer",
    "channels-pubsub": "Channels group_send, channels_redis RedisPubSubChannelLayer",
    "rooms-resume-memory": "asgi_ws Rooms, members resumable (memory store)",
    "rooms-resume-redis": "asgi_ws Rooms, members resumable (Redis store)",
    "channels-layer-memory": "Channels group_send, asgi_ws BrokerChannelLayer memory://",
    "channels-layer-redis": "Channels group_send, asgi_ws BrokerChannelLayer redis:// (2 processes)",
    "channels-layer-memory-nodb": "same, BrokerChannelLayer memory://, consumers without aclose_old_connections",
    "channels-layer-redis-nodb": "same, BrokerChannelLayer redis:// (2 processes), without aclose_old_connections",
    "rooms-amqp": "asgi_ws Rooms, amqp:// RabbitMQ (2 processes)",
    "rooms-memory-batch": "asgi_ws Rooms, memory://, clients asking for batches",
    "channels-layer-memory-lean": "same, BrokerChannelLayer memory://, LeanDispatchMixin consumers",
    "channels-layer-redis-lean": "same, BrokerChannelLayer redis:// (2 processes), LeanDispatchMixin consumers",
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------------------------------------
# The client worker: one process holding its share of the members.
# ---------------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.tag = b"\x00"
        self.target = 0
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.ready = 0
        self.closed = 0
        self.done: asyncio.Future[None] | None = None
        self.sizes: dict[int, int] = {}  # frames carrying the round's messages, by messages in the frame


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The coordinator's commands to a worker, one JSON line each on stdin, until ``quit`` or its end."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            return
        yield cmd


async def _worker(cfg: dict[str, Any]) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    TEXT, CLOSE = WSMsgType.TEXT, WSMsgType.CLOSE
    BATCH, WELCOME = b'{"$ws":"batch"', b'{"$ws":"welcome"'
    st = _State()
    sio, batches = cfg["sio"], cfg.get("batches", False)

    class Member(WSListener):  # type: ignore[misc]
        def __init__(self, url: str) -> None:
            self.url = url
            self.transport: WSTransport | None = None

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport
            if batches:  # ready once the server answered (batches are on from then)
                transport.send(TEXT, b'{"$ws":"hello","v":1,"batch":true}')
            elif not sio:
                st.ready += 1

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is not TEXT:
                if kind is CLOSE:
                    transport.disconnect()
                return
            payload = frame.get_payload_as_bytes()
            if sio and not payload.startswith(b"42"):
                if payload == b"2":  # Engine.IO ping
                    transport.send(TEXT, b"3")
                elif payload.startswith(b"40"):  # connected to the namespace (and in the room)
                    st.ready += 1
                elif payload.startswith(b"0"):  # Engine.IO open: connect to the default namespace
                    transport.send(TEXT, b"40")
                return
            tag = st.tag
            if tag in payload:
                if batches:  # a batch frame carries several of the round's messages: count each
                    count = payload.count(tag) if payload.startswith(BATCH) else 1
                    st.sizes[count] = st.sizes.get(count, 0) + 1
                else:
                    count = 1
                if not st.count:
                    st.first = time.time()
                st.count += count
                if st.count >= st.target and not st.last:
                    st.last = time.time()
                    if st.done is not None and not st.done.done():
                        st.done.set_result(None)
            elif batches and payload.startswith(WELCOME):
                st.ready += 1

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            st.closed += 1

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    members: list[Member] = []
    batch, pause = cfg["batch"], cfg["pause"]
    failures: dict[str, int] = {}
    for url, count in cfg["urls"]:
        wanted = count
        attempts = 0
        while wanted and attempts < 5:  # a refused handshake is retried (and reported)
            attempts += 1
            for start in range(0, wanted, batch):
                pairs = await asyncio.gather(
                    *(
                        ws_connect(lambda u=url: Member(u), url, enable_auto_pong=True)
                        for _ in range(min(batch, wanted - start))
                    ),
                    return_exceptions=True,
                )
                for pair in pairs:
                    if isinstance(pair, BaseException):
                        failures[repr(pair)[:160]] = failures.get(repr(pair)[:160], 0) + 1
                    else:
                        members.append(pair[1])
                await asyncio.sleep(pause)
            wanted = count - sum(1 for m in members if m.url == url)
            if wanted:
                await asyncio.sleep(1.0)
    deadline = time.monotonic() + 60
    while st.ready < len(members) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.05)
    emit({"ready": st.ready, "connected": len(members), "failures": failures})

    loop = asyncio.get_running_loop()
    async for cmd in commands():
        # arm: reset the counters, answer, then report when every member has the message (or time out)
        st.tag = f"#{cmd['tag']}#".encode()
        st.target, st.count, st.first, st.last = len(members) * cmd.get("burst", 1), 0, 0.0, 0.0
        st.sizes = {}
        st.done = loop.create_future()
        cpu0 = _cpu()
        emit({"armed": True})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(st.done), cmd["timeout"])
        emit({"count": st.count, "first": st.first, "last": st.last, "cpu": _cpu() - cpu0, "closed": st.closed,
              "sizes": st.sizes})  # fmt: skip
    for m in members:
        if m.transport is not None:
            m.transport.disconnect()
    await asyncio.sleep(0.2)


class Worker:
    """A client worker process, spoken to with JSON lines over its stdin/stdout."""

    #: The program a worker runs (``python <script> --worker CFG``); bench/compression.py has its own.
    script = __file__

    def __init__(self, proc: asyncio.subprocess.Process, size: int) -> None:
        self.proc = proc
        self.size = size

    @classmethod
    async def start(
        cls, urls: list[tuple[str, int]], *, sio: bool, batch: int, pause: float, batches: bool = False
    ) -> Worker:
        cfg = {"urls": urls, "sio": sio, "batch": batch, "pause": pause, "batches": batches}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, cls.script, "--worker", json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, limit=1 << 20,
        )  # fmt: skip
        return cls(proc, sum(n for _, n in urls))

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client worker {self.proc.pid} exited (code {await self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def write(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                self.write({"cmd": "quit"})
                await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The coordinator.
# ---------------------------------------------------------------------------------------------


class Http:
    """A keep-alive HTTP/1.1 GET client (no library between the trigger and the socket)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str, timeout: float = 60.0) -> str:
        """GET ``path``; once more on a new connection when the server had closed the kept-alive
        one (uvicorn does after 5 idle seconds, e.g. while another system of the group connects):
        it closed it before reading the request, so the request was not served."""
        kept = self.conn is not None
        try:
            return await self._get(path, timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if not kept or getattr(exc, "partial", b""):
                raise
            return await self._get(path, timeout)

    async def _get(self, path: str, timeout: float) -> str:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            return (await asyncio.wait_for(reader.readexactly(length), timeout)).decode()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


@dataclass
class Round:
    ttl: float | None  # seconds until the last member had it (None: not every member within the timeout)
    first: float
    delivered: int
    server_cpu_us: float  # per delivery, all server processes
    client_cpu_us: float  # per delivery, all client workers
    client_util: float  # max over workers: CPU seconds / seconds from trigger to its last delivery
    call_ms: float  # how long the broadcast call took in the triggering process
    sizes: dict[int, int] = field(default_factory=dict)  # frames by messages they carried (batching clients)


@dataclass
class System:
    name: str
    n: int
    servers: list[ServerProcess]
    workers: list[Worker] = field(default_factory=list)
    http: list[Http] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    warmup: list[Round] = field(default_factory=list)
    note: str = ""
    failures: dict[str, int] = field(default_factory=dict)  # refused handshakes, retried
    spent: float = 0.0
    stopped: bool = False
    worker: type[Worker] = Worker  # the client worker processes (bench/compression.py: clients offering deflate)
    burst: int = 1  # broadcasts back to back per round

    @property
    def batches(self) -> bool:
        """Its clients ask for batch frames."""
        return self.name.endswith("-batch")

    @property
    def sio(self) -> bool:
        return self.name == "socketio"

    def url(self, server: ServerProcess) -> str:
        if self.name.startswith("rooms-resume"):
            return server.ws_url("/ws?ws_resume=new")
        return server.ws_url("/socket.io/?EIO=4&transport=websocket" if self.sio else "/ws")


def server_specs(name: str, run_id: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """(app import string, env, extra uvicorn args) per server process of ``name``."""
    lifespan = ["--lifespan", "on"]
    if name == "bare":
        return [("bench.fanout_servers.bare_loop:app", {}, [])]
    if name in ("rooms-memory", "rooms-memory-batch"):
        return [("bench.fanout_servers.rooms_memory:app", {}, lifespan)]
    if name == "rooms-redis":
        env = {"FANOUT_REDIS_URL": f"{REDIS}?prefix=fanout-{run_id}:"}
        return [("bench.fanout_servers.rooms_redis:app", env, lifespan)] * 2
    if name == "rooms-amqp":
        env = {"FANOUT_AMQP_URL": f"{AMQP}?exchange=fanout-{run_id}"}
        return [("bench.fanout_servers.rooms_amqp:app", env, lifespan)] * 2
    if name == "socketio":
        return [("bench.fanout_servers.socketio_room:app", {}, [])]
    if name.startswith("rooms-resume"):  # a history broker: room messages are numbered from it, not stored
        store = "memory://" if name.endswith("memory") else f"{REDIS}?prefix=fanout-sessions-{run_id}:"
        broker = "memory://" if name.endswith("memory") else f"{REDIS}?prefix=fanout-{run_id}:"
        env = {
            "FANOUT_SESSION_STORE": store,
            "FANOUT_BROKER": broker + ("&" if "?" in broker else "?") + "history=10000",
        }
        return [("bench.fanout_servers.rooms_resume:app", env, lifespan)]
    base = name.removesuffix("-nodb").removesuffix("-lean")
    layer = {"channels-layer-memory": "broker-memory", "channels-layer-redis": "broker-redis"}.get(
        base, base.split("-", 1)[1]
    )
    env = {"FANOUT_CHANNEL_LAYER": layer, "FANOUT_REDIS_HOST": REDIS, "FANOUT_PREFIX": f"fanout-{run_id}-{layer}"}
    if name.endswith(("-nodb", "-lean")):
        env["FANOUT_CONSUMER_DISPATCH"] = name.rsplit("-", 1)[1]
    return [("bench.fanout_servers.channels_group:app", env, [])] * (2 if layer == "broker-redis" else 1)


@contextlib.contextmanager
def start_servers(name: str, ws: str, run_id: str) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                uvicorn_process(app, ws=ws, port=free_port(), env=env, extra=["--backlog", "8192", *extra])
            )
            for app, env, extra in server_specs(name, run_id)
        ]
        yield servers


async def connect(system: System, clients: int, batch: int, pause: float) -> None:
    """Start the client workers of ``system`` and wait until every member has joined, server-side."""
    urls = [system.url(s) for s in system.servers]
    shares: list[list[tuple[str, int]]] = [[] for _ in range(clients)]
    per_server = [system.n // len(urls) + (i < system.n % len(urls)) for i in range(len(urls))]
    for url, total in zip(urls, per_server, strict=True):
        for w in range(clients):
            k = total // clients + (w < total % clients)
            if k:
                shares[w].append((url, k))
    if system.name == "channels-redis":  # group_add per handshake: stay under the layer's pool of 100 connections
        batch = min(batch, 100 // (2 * clients))
    start = system.worker.start
    batches = system.batches
    system.workers = [
        await start(share, sio=system.sio, batch=batch, pause=pause, batches=batches) for share in shares if share
    ]
    for worker in system.workers:
        reply = await worker.read(300)
        for error, count in reply["failures"].items():
            system.failures[error] = system.failures.get(error, 0) + count
        if reply["ready"] != worker.size:
            system.note = f"only {reply['ready']} of {worker.size} members of a client process connected"
            system.stopped = True
    if system.failures:
        print(f"  {system.name} N={system.n}: refused handshakes (retried): {system.failures}", file=sys.stderr)
    if system.stopped:
        return
    system.http = [Http(s.port) for s in system.servers]
    deadline = time.monotonic() + 60
    while True:
        joined = sum([int(await h.get("/count")) for h in system.http])
        if joined == system.n:
            return
        if time.monotonic() > deadline:
            system.note = f"only {joined} of {system.n} members joined"
            system.stopped = True
            return
        await asyncio.sleep(0.1)


async def one_round(system: System, tag: str, timeout: float) -> Round:
    for worker in system.workers:
        worker.write({"cmd": "arm", "tag": tag, "timeout": timeout, "burst": system.burst})
    for worker in system.workers:
        assert (await worker.read(30))["armed"]
    cpu0 = [cpu_seconds(s) for s in system.servers]
    t0 = time.time()
    trigger = f"/trigger?tag={tag}" + (f"&count={system.burst}" if system.burst > 1 else "")
    call = asyncio.ensure_future(system.http[0].get(trigger, timeout=timeout + 30))
    reports = [await worker.read(timeout + 30) for worker in system.workers]
    try:
        call_ms = float((await call).split()[1]) * 1000
    except Exception:
        call_ms = float("nan")
    server_cpu = sum(cpu_seconds(s) for s in system.servers) - sum(cpu0)
    delivered = sum(r["count"] for r in reports)
    complete = delivered == system.n * system.burst
    sizes: dict[int, int] = {}
    for report in reports:
        for size, frames in report.get("sizes", {}).items():
            sizes[int(size)] = sizes.get(int(size), 0) + frames
    ttl = max(r["last"] for r in reports) - t0 if complete else None
    firsts = [r["first"] for r in reports if r["first"]]
    utils = [r["cpu"] / max(r["last"] - t0, 1e-3) for r in reports if r["last"]]
    return Round(
        ttl=ttl,
        first=min(firsts) - t0 if firsts else float("nan"),
        delivered=delivered,
        server_cpu_us=server_cpu / max(delivered, 1) * 1e6,
        client_cpu_us=sum(r["cpu"] for r in reports) / max(delivered, 1) * 1e6,
        client_util=max(utils) if utils else float("nan"),
        call_ms=call_ms,
        sizes=sizes,
    )


async def measure(systems: list[System], args: argparse.Namespace, counter: Iterator[int]) -> None:
    """Connect ``systems`` together, then alternate their rounds (warm-up first)."""
    try:
        for system in systems:
            await connect(system, args.clients, args.batch, args.pause)
            print(f"  {system.name} N={system.n}: connected {system.note}", file=sys.stderr, flush=True)
        recording = contextlib.ExitStack()
        for i in range(args.warmup + args.rounds):
            if i == args.warmup and args.py_spy is not None:
                recording.enter_context(py_spy(systems, args.py_spy))
            for system in systems[i % len(systems) :] + systems[: i % len(systems)]:  # rotate who goes first
                if system.stopped or (i >= args.warmup + args.min_rounds and system.spent > args.budget):
                    continue
                started = time.monotonic()
                result = await one_round(system, f"r{next(counter):05d}", args.round_timeout)
                system.spent += time.monotonic() - started if i >= args.warmup else 0.0
                (system.warmup if i < args.warmup else system.rounds).append(result)
                shown = f"{result.ttl * 1000:.1f} ms" if result.ttl is not None else "incomplete"
                print(
                    f"  {system.name} N={system.n} {'warm-up' if i < args.warmup else 'round'} {i}: {shown}, "
                    f"{result.delivered} delivered, client util {result.client_util:.0%}",
                    file=sys.stderr,
                    flush=True,
                )
                if result.ttl is None:
                    what = "warm-up" if i < args.warmup else f"round {i - args.warmup + 1}"
                    system.note = (
                        f"{what}: {result.delivered} of {system.n} delivered within {args.round_timeout:.0f} s; stopped"
                    )
                    system.stopped = True
                await asyncio.sleep(args.settle)
        recording.close()
    finally:
        for system in systems:
            for h in system.http:
                h.close()
            await asyncio.gather(*(w.stop() for w in system.workers), return_exceptions=True)


@contextlib.contextmanager
def py_spy(systems: list[System], directory: Path) -> Iterator[None]:
    """Record each system's first server process with py-spy while the block runs (its measured
    rounds): raw collapsed stacks in ``directory/<system>-<N>.txt``, on-CPU samples only.
    ``python bench/channels_fanout.py --breakdown FILE...`` sorts them into where the time goes."""
    directory.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    recorders = []
    for s in systems:
        out = directory / f"{s.name}-{s.n}.txt"
        cmd = [spy, "record", "--pid", str(s.servers[0].proc.pid), "--rate", "250", "--format", "raw",
               "--output", str(out), "--duration", "3600"]  # fmt: skip
        recorders.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for recorder in recorders:
            recorder.wait(60)


def run_group(names: list[str], n: int, ws: str, args: argparse.Namespace, counter: Iterator[int]) -> list[System]:
    run_id = uuid.uuid4().hex[:8]
    try:
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(start_servers(name, ws, run_id)) for name in names]
            systems = [System(name, n, s, burst=args.burst) for name, s in zip(names, servers, strict=True)]
            asyncio.run(measure(systems, args, counter))
    finally:
        if "channels-redis" in names:  # group sets left behind by failed group_discards
            import redis

            client = redis.Redis.from_url(REDIS)
            for key in client.scan_iter(match=f"fanout-{run_id}-*"):
                client.delete(key)
            client.close()
        if "rooms-amqp" in names:  # the exchange is durable
            asyncio.run(_delete_exchange(f"fanout-{run_id}"))
    return systems


async def _delete_exchange(name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)


# ---------------------------------------------------------------------------------------------
# Reporting.
# ---------------------------------------------------------------------------------------------


def summary(system: System) -> dict[str, Any]:
    """Medians over the measured rounds; a round in which not every member got the message within
    the timeout counts as infinitely slow (so one such round in seven does not hide, nor does it
    erase the others)."""
    out: dict[str, Any] = {
        "system": system.name,
        "n": system.n,
        "rounds": len(system.rounds),
        "note": system.note,
        "refused_handshakes": sum(system.failures.values()),
        "failures": system.failures,
        "burst": system.burst,
    }
    ttls = [r.ttl if r.ttl is not None else float("inf") for r in system.rounds]
    ok = [r for r in system.rounds if r.ttl is not None]
    if not ttls or median(ttls) == float("inf"):
        out["delivered"] = system.rounds[-1].delivered if system.rounds else 0
        out["rate"] = 0.0
        return out
    ttl = median(ttls)
    sizes: dict[int, int] = {}
    for r in ok:
        for size, frames in r.sizes.items():
            sizes[size] = sizes.get(size, 0) + frames
    out.update(
        rate=system.n * system.burst / ttl,
        batch_sizes=sizes,
        ttl_ms=ttl * 1000,
        min_ms=min(ttls) * 1000,
        max_ms=max(ttls) * 1000,
        first_ms=median([r.first for r in ok]) * 1000,
        server_cpu_us=median([r.server_cpu_us for r in ok]),
        client_cpu_us=median([r.client_cpu_us for r in ok]),
        client_util=median([r.client_util for r in ok]),
        client_util_max=max(r.client_util for r in ok),
        call_ms=median([r.call_ms for r in ok]),
    )
    return out


def rows_of(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if "ttl_ms" in r:
            rows.append([
                r["ws"], LABELS[r["system"]], members(r), f"{r['rate']:,.0f}", f"{r['ttl_ms']:.1f}",
                f"{r['min_ms']:.1f}-" + (f"{r['max_ms']:.1f}" if r["max_ms"] != float("inf") else "∞"),
                f"{r['first_ms']:.1f}", f"{r['call_ms']:.1f}",
                f"{r['server_cpu_us']:.1f}", f"{r['client_cpu_us']:.1f}",
                f"{r['client_util']:.0%} (max {r['client_util_max']:.0%})",
                str(r["rounds"]) + (f" ({r['note']})" if r["note"] else ""),
            ])  # fmt: skip
        else:
            rows.append(
                [r["ws"], LABELS[r["system"]], members(r), "0", r["note"], "", "", "", "", "", "", str(r["rounds"])]
            )
    return rows


def members(result: dict[str, Any]) -> str:
    """N, and the broadcasts a round when more than one."""
    burst = result.get("burst", 1)
    return f"{result['n']:,}" + (f" x {burst} broadcasts" if burst > 1 else "")


def batch_sizes(results: list[dict[str, Any]]) -> list[list[str]]:
    """The frames batching clients got, by messages a frame (1: a message alone), over the measured rounds."""
    buckets = [(1, 1), (2, 9), (10, 49), (50, 99), (100, 255), (256, 10**9)]
    rows = []
    for r in results:
        sizes = r.get("batch_sizes")
        if not sizes:
            continue
        frames, messages = sum(sizes.values()), sum(k * v for k, v in sizes.items())
        shares = []
        for low, high in buckets:
            count = sum(v for k, v in sizes.items() if low <= k <= high)
            label = str(low) if low == high else (f"{low}+" if high > 10**6 else f"{low}-{high}")
            shares.append(f"{label}: {count / frames:.1%}")
        common = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        rows.append([
            r["ws"], LABELS[r["system"]], members(r), f"{frames:,}", f"{messages / frames:.1f}", ", ".join(shares),
            ", ".join(f"{k} ({v:,})" for k, v in common),
        ])  # fmt: skip
    return rows


HEADERS = [
    "uvicorn --ws", "system", "N", "deliveries/s", "time to last member, median ms", "min-max ms",
    "time to first ms", "broadcast call ms", "server CPU µs/delivery", "client CPU µs/delivery",
    "client CPU, busiest worker (median, max)", "rounds",
]  # fmt: skip


def ratios(results: list[dict[str, Any]]) -> list[list[str]]:
    by = {(r["ws"], r["system"], r["n"]): r for r in results}
    targets = [
        ("rooms-memory", "bare", 0.9, "Rooms memory / bare loop"),
        ("rooms-redis", "bare", 0.7, "Rooms redis (2 procs) / bare loop"),
        ("rooms-amqp", "bare", 0.7, "Rooms amqp (2 procs) / bare loop"),
        ("rooms-amqp", "rooms-redis", 0.9, "Rooms amqp / Rooms redis (2 procs each)"),
        ("rooms-resume-memory", "rooms-memory", 0.9, "Rooms resumable members, memory store / plain Rooms memory"),
        ("rooms-resume-redis", "rooms-memory", 0.8, "Rooms resumable members, Redis store / plain Rooms memory"),
        ("rooms-memory", "channels-redis", 10.0, "Rooms memory / channels_redis group_send"),
        ("rooms-redis", "channels-redis", 10.0, "Rooms redis / channels_redis group_send"),
        ("rooms-memory", "socketio", 5.0, "Rooms memory / python-socketio room emit"),
        ("rooms-redis", "socketio", 5.0, "Rooms redis / python-socketio room emit"),
        ("channels-layer-redis", "channels-pubsub", 10.0, "BrokerChannelLayer redis / RedisPubSubChannelLayer"),
        ("channels-layer-redis", "channels-redis", 10.0, "BrokerChannelLayer redis / RedisChannelLayer"),
        ("channels-layer-memory", "channels-memory", 10.0, "BrokerChannelLayer memory / InMemoryChannelLayer"),
        ("channels-layer-redis", "rooms-redis", 1 / 3, "BrokerChannelLayer redis / Rooms redis (within 3x)"),
        ("channels-layer-memory", "rooms-memory", 1 / 3, "BrokerChannelLayer memory / Rooms memory (within 3x)"),
        ("channels-layer-redis-nodb", "channels-pubsub", 10.0, "BrokerChannelLayer redis, nodb / RedisPubSub"),
        ("channels-layer-redis-nodb", "rooms-redis", 1 / 3, "BrokerChannelLayer redis, nodb / Rooms redis"),
        ("channels-layer-memory-nodb", "rooms-memory", 1 / 3, "BrokerChannelLayer memory, nodb / Rooms memory"),
    ]
    bursts = {r.get("burst", 1) for r in results}
    targets += [  # batching: sustained throughput, and no slower for one broadcast
        ("rooms-memory-batch", "bare", 1.5, "Rooms memory, batching clients / bare loop, back-to-back broadcasts")
        if max(bursts) > 1
        else ("rooms-memory-batch", "rooms-memory", 1 / 1.1, "Rooms memory, batching clients / unbatched (1.1x time)"),
        ("channels-layer-redis-lean", "channels-pubsub", 10.0, "BrokerChannelLayer redis, lean / RedisPubSub"),
        ("channels-layer-redis-lean", "rooms-redis", 1 / 3, "BrokerChannelLayer redis, lean / Rooms redis"),
        ("channels-layer-memory-lean", "rooms-memory", 1 / 3, "BrokerChannelLayer memory, lean / Rooms memory"),
    ]
    rows = []
    for ws, n in sorted({(r["ws"], r["n"]) for r in results}, key=lambda k: (k[0], -k[1])):
        for a, b, target, label in targets:
            ra, rb = by.get((ws, a, n)), by.get((ws, b, n))
            if ra is None or rb is None:
                continue
            if ra["rate"] > 0 and rb["rate"] > 0 and rb["note"]:
                value = f"{ra['rate'] / rb['rate']:.2f}x ({b}: {rb['note']})"
                rows.append(
                    [
                        ws,
                        f"{n:,}",
                        label,
                        f">= {target:.2g}x",
                        value,
                        "met" if ra["rate"] >= target * rb["rate"] else "NOT met",
                    ]
                )
                continue
            if rb["rate"] == 0 and ra["rate"] > 0:
                value, met = "∞ (" + (rb["note"] or "no delivery") + ")", "met"
            elif ra["rate"] == 0:
                value, met = "0 (" + (ra["note"] or "no delivery") + ")", "NOT met"
            else:
                x = ra["rate"] / rb["rate"]
                value, met = f"{x:.2f}x", "met" if x >= target else "NOT met"
            rows.append([ws, f"{n:,}", label, f">= {target:.2g}x", value, met])
    return rows


def versions() -> str:
    names = ["uvicorn", "starlette", "websockets", "wsproto", "picows", "python-socketio", "python-engineio",
             "channels", "channels-redis", "django", "redis", "aio-pika"]  # fmt: skip
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    import asgi_ws

    try:
        redis_server = subprocess.run(
            ["redis-cli", "INFO", "server"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        rv = next((line.split(":")[1].strip() for line in redis_server.splitlines() if "redis_version" in line), "?")
    except OSError:
        rv = "?"
    return f"Python {platform.python_version()}, asgi_ws {asgi_ws.__version__}, {', '.join(found)}, Redis server {rv}"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = results[0]["ws"]
    rs = [r for r in results if r["ws"] == ws]
    names = [s for s in SYSTEMS if any(r["system"] == s for r in rs)]
    ns = sorted({r["n"] for r in rs})
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(ns)
    for j, n in enumerate(ns):
        vals = [next((r["rate"] for r in rs if r["system"] == s and r["n"] == n), 0.0) for s in names]
        xs = [i + (j - (len(ns) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, [v if v > 0 else 100 for v in vals], width, label=f"N = {n:,}")
        for x, v, bar in zip(xs, vals, bars, strict=True):
            if v <= 0:
                bar.set_alpha(0.15)
            ax.text(x, max(v, 100) * 1.08, f"{v / 1000:.1f}k" if v > 0 else "0\n(none)", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(100, max(r["rate"] for r in rs) * 3)
    ax.set_xticks(range(len(names)))
    short = {
        "bare": "bare Starlette\nloop (ceiling)",
        "rooms-memory": "asgi_ws Rooms\nmemory://",
        "rooms-redis": "asgi_ws Rooms\nredis:// (2 procs)",
        "socketio": "python-socketio\nroom emit",
        "channels-memory": "Channels\nInMemoryChannelLayer",
        "channels-redis": "Channels\nRedisChannelLayer",
        "channels-pubsub": "Channels\nRedisPubSubChannelLayer",
        "rooms-resume-memory": "Rooms, resumable\n(memory store)",
        "rooms-resume-redis": "Rooms, resumable\n(Redis store)",
        "channels-layer-memory": "Channels\nBrokerChannelLayer\nmemory://",
        "channels-layer-redis": "Channels\nBrokerChannelLayer\nredis:// (2 procs)",
        "channels-layer-memory-nodb": "BrokerChannelLayer\nmemory://, no\nclose_old_connections",
        "channels-layer-redis-nodb": "BrokerChannelLayer\nredis://, no\nclose_old_connections",
        "rooms-amqp": "asgi_ws Rooms\namqp:// (2 procs)",
        "rooms-memory-batch": "asgi_ws Rooms\nmemory://,\nbatching clients",
        "channels-layer-memory-lean": "BrokerChannelLayer\nmemory://,\nLeanDispatchMixin",
        "channels-layer-redis-lean": "BrokerChannelLayer\nredis://,\nLeanDispatchMixin",
    }
    ax.set_xticklabels([short[s] for s in names], fontsize=8)
    ax.set_ylabel("deliveries / s (N / median time to last member), log scale")
    ax.set_title(f"Fan-out of one ~100-byte message to N WebSocket members (uvicorn --ws {ws})")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", nargs="+", default=["websockets-sansio"], help="uvicorn --ws implementations")
    parser.add_argument("--n", nargs="+", type=int, default=[1000, 5000], help="members per broadcast")
    parser.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--burst", type=int, default=1, help="broadcasts back to back a round (sustained throughput: 100)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-rounds", type=int, default=3, help="rounds run even over --budget")
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of measured rounds per system and N")
    parser.add_argument("--round-timeout", type=float, default=20.0, help="seconds to wait for every member")
    parser.add_argument("--clients", type=int, default=2, help="client worker processes per system")
    parser.add_argument("--batch", type=int, default=200, help="connections opened at once per worker")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between connection batches")
    parser.add_argument("--settle", type=float, default=0.3, help="seconds between rounds")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 15 s budgets, 10 s timeout")
    parser.add_argument("--json", type=Path, help="also write the summaries as JSON here")
    parser.add_argument("--write", action="store_true", help="write bench/results/fanout.md and docs/fanout.png")
    parser.add_argument("--py-spy", type=Path, help="record each system's first server with py-spy into this directory")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.worker:
        asyncio.run(_worker(json.loads(args.worker)))
        return
    if args.quick:
        args.rounds, args.min_rounds, args.budget, args.round_timeout = 3, 2, 15.0, 10.0
    started = time.monotonic()
    counter = iter(range(1, 10**9))
    results: list[dict[str, Any]] = []
    for ws in args.ws:
        for n in args.n:
            pairs = [[LAYER_PAIRS[s], s] for s in args.systems if LAYER_PAIRS.get(s) in args.systems]
            in_pairs = {s for pair in pairs for s in pair}
            groups = [[s for s in PAIRED if s in args.systems and s not in in_pairs], *pairs]
            groups += [[s] for s in args.systems if s not in PAIRED and s not in in_pairs]
            for group in filter(None, groups):
                print(f"{ws}, N={n}: {', '.join(group)}", file=sys.stderr, flush=True)
                for system in run_group(group, n, ws, args, counter):
                    results.append({"ws": ws, **summary(system)})
    elapsed = time.monotonic() - started
    command = "python bench/fanout.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        f"`{command}`, {datetime.date.today().isoformat()}, {elapsed / 60:.1f} min; {versions()}; "
        f"{os.cpu_count()} cores.",
        "",
        (f"{args.burst} ~100-byte text messages back to back" if args.burst > 1 else "One ~100-byte text message")
        + f" per round to N members; {args.warmup} warm-up round(s), then up to "
        f"{args.rounds} rounds (at least {args.min_rounds}; fewer when a system's rounds exceed {args.budget:.0f} s); "
        f"{args.clients} picows client processes per system; bare, Rooms memory and Rooms redis connected together, "
        "rounds alternating (rotating who goes first). deliveries/s = N x messages a round / median time until "
        "the last member had them all (a round "
        "not complete within the timeout counts as infinitely slow). Broadcast call = the trigger's "
        "`send` loop / `publish` / `group_send` / `emit` in the server. Client CPU, busiest worker = its CPU "
        "seconds / seconds from the trigger to its last delivery (100% = one core).",
        "",
        table(HEADERS, rows_of(results)),
        "",
        "Ratios of deliveries/s vs the targets:",
        "",
        table(["uvicorn --ws", "N", "ratio", "target", "measured", ""], ratios(results)),
    ])  # fmt: skip
    if any(r.get("batch_sizes") for r in results):
        report += "\n\nFrames the batching clients got, by messages a frame (a batch frame, or 1: alone):\n\n" + table(
            ["uvicorn --ws", "system", "N", "frames", "messages a frame, mean", "share of frames", "most frequent"],
            batch_sizes(results),
        )
    print(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write:
        (ROOT / "bench" / "results" / "fanout.md").write_text(report + "\n")
        plot(results, ROOT / "docs" / "fanout.png")


if __name__ == "__main__":
    main()
