"""``asgi-ws serve``: the pub/sub server with its demo page, under uvicorn.

    asgi-ws serve [--broker memory://] [--host 127.0.0.1] [--port 8000] [--allow-origin URL ...]

Serves ``PubSubApp`` at ``--path`` (``/ws``) behind OriginMiddleware (same-origin always
allowed, plus ``--allow-origin``), HeartbeatMiddleware, ResumeMiddleware (``--resume-window``),
BackpressureMiddleware and RateLimitMiddleware; the demo page at ``/`` and the browser client
at ``/asgi-ws.js``. Several processes on one Redis, PostgreSQL or NATS broker form one cluster.
On SIGTERM/SIGINT it drains (``asgi_ws.server``): queued messages are flushed, connections closed
with 1001, new handshakes refused with 503, within ``--drain-timeout`` seconds.

Before uvicorn starts, the command checks its address, connects the broker and asks the session
store once. A failure is one line on stderr: exit status 1 for what cannot be reached or is not
installed (the line names the ``pip install 'asgi-ws[...]'`` to run), 2 for a command line that
cannot work (an unknown broker scheme, a bad ``--log-level``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from . import __version__
from .brokers.base import redact_url
from .deny import deny
from .drain import DRAIN_TIMEOUT
from .exceptions import BrokerError, ConfigurationError, MissingDependencyError
from .middleware.backpressure import BackpressureMiddleware
from .middleware.connlimit import ConnectionLimitMiddleware, default_max_connections
from .middleware.heartbeat import HeartbeatMiddleware
from .middleware.origin import OriginMiddleware
from .middleware.ratelimit import RateLimitMiddleware
from .middleware.resume import ResumeMiddleware
from .pubsub import PubSubApp
from .rooms import Rooms
from .static import BrowserClientApp, read
from .types import ASGIApp, Message, Receive, Scope, Send

#: Seconds uvicorn's own shutdown may take after the drain (connections the drain left get 1012).
SHUTDOWN_GRACE = 5

#: Seconds the start-up check waits for the session store to answer.
STORE_CHECK_TIMEOUT = 10.0
#: uvicorn's log levels, the values of ``--log-level``.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: Exit statuses of ``asgi-ws``: a runtime failure (a missing package, a broker that cannot be
#: reached, a port in use), and a command line that cannot work (argparse's status).
FAILED, USAGE = 1, 2


def build_app(
    *,
    broker: str = "memory://?history=1000",
    namespace: str = "asgi_ws",
    path: str = "/ws",
    allow_origins: Sequence[str] = (),
    allow_any_origin: bool = False,
    allow_missing_origin: bool = False,
    heartbeat_interval: float = 20.0,
    rate: float = 50.0,
    max_message_size: int = 65_536,
    max_connections: int | None = 10_000,
    max_connections_per_ip: int | None = 100,
    demo: bool = True,
    metrics: bool = False,
    resume_window: float = 120.0,
    session_store: str = "memory://",
    resume_keys: Sequence[str] = (),
) -> ASGIApp:
    """The ASGI application ``asgi-ws serve`` runs (also usable with any ASGI server).

    ``resume_window`` 0 turns resumption off; ``resume_keys`` sign the resume tokens (processes
    sharing a ``session_store`` need the same keys; by default a random key per process).
    ``max_connections`` / ``max_connections_per_ip`` (None or 0: no limit) cap open sockets
    before any other check (ConnectionLimitMiddleware, outermost). ``allow_missing_origin``
    accepts handshakes without an ``Origin`` header (non-browser clients send none).

    Raises:
        ConfigurationError: an option is invalid (an unknown broker or store scheme...).
        MissingDependencyError: the broker, the session store or ``metrics`` needs a package
            that is not installed; the message names the extra to install.
    """
    served = _build(
        broker=broker,
        namespace=namespace,
        path=path,
        allow_origins=allow_origins,
        allow_any_origin=allow_any_origin,
        allow_missing_origin=allow_missing_origin,
        heartbeat_interval=heartbeat_interval,
        rate=rate,
        max_message_size=max_message_size,
        max_connections=max_connections,
        max_connections_per_ip=max_connections_per_ip,
        demo=demo,
        metrics=metrics,
        resume_window=resume_window,
        session_store=session_store,
        resume_keys=resume_keys,
    )
    served.warn()
    return served.app


class _Served(NamedTuple):
    """What ``asgi-ws serve`` starts before uvicorn does: the app, its rooms and its session store."""

    app: ASGIApp
    rooms: Rooms
    resume: ResumeMiddleware | None
    session_store: str
    random_keys: bool

    def warn(self) -> None:
        """Say what an operator should know before the first connection arrives."""
        if self.random_keys:
            logging.getLogger("asgi_ws").warning(
                "ASGI_WS_RESUME_KEYS is not set: resume tokens are signed with a random key of this process, "
                "so no session survives a restart or resumes on another process"
            )

    async def start(self) -> None:
        """Connect the broker and ask the session store once, before uvicorn starts: what cannot
        be reached is one line and exit status 1 instead of uvicorn's failed lifespan.

        Raises:
            CannotStart: saying what could not be reached.
        """
        if self.resume is not None:  # first: the rooms log their start
            try:
                await asyncio.wait_for(self.resume.store.inspect("asgi-ws-serve:start-check"), STORE_CHECK_TIMEOUT)
            except Exception as exc:
                await self.resume.close()
                where = redact_url(self.session_store)
                raise CannotStart(f"cannot reach the session store at {where}: {exc or type(exc).__name__}") from exc
        try:
            await self.rooms.start()  # the lifespan's start finds it done
        except (BrokerError, OSError) as exc:
            if self.resume is not None:
                await self.resume.close()
            raise CannotStart(str(exc)) from exc
        self.warn()


class CannotStart(Exception):
    """``asgi-ws serve`` cannot start: a broker, session store or address that cannot be reached."""


def _build(
    *,
    broker: str,
    namespace: str,
    path: str,
    allow_origins: Sequence[str],
    allow_any_origin: bool,
    allow_missing_origin: bool,
    heartbeat_interval: float,
    rate: float,
    max_message_size: int,
    max_connections: int | None,
    max_connections_per_ip: int | None,
    demo: bool,
    metrics: bool,
    resume_window: float,
    session_store: str,
    resume_keys: Sequence[str],
) -> _Served:
    rooms = Rooms(broker, namespace=namespace)
    pubsub = PubSubApp(rooms, max_publish_bytes=max_message_size)
    ratelimit = RateLimitMiddleware(pubsub, rate=rate, burst=2 * rate, max_message_size=max_message_size)
    backpressure = BackpressureMiddleware(ratelimit, max_messages=1000, policy="drop_oldest")
    session: ASGIApp = backpressure
    resume: ResumeMiddleware | None = None
    if resume_window > 0:
        keys = list(resume_keys) or [secrets.token_urlsafe(32)]
        session = resume = ResumeMiddleware(
            backpressure, secret_keys=keys, store=session_store, window=resume_window, rooms=rooms
        )
        if not resume_keys:  # the likely reason a token's key is unknown: this process was restarted
            resume.signer.unknown_key_hint = "keys change on restart unless ASGI_WS_RESUME_KEYS is set"
    endpoint = OriginMiddleware(
        HeartbeatMiddleware(session, interval=heartbeat_interval, timeout=heartbeat_interval),
        allow_origins=["*"] if allow_any_origin else list(allow_origins),
        allow_missing=allow_missing_origin,
        allow_same_origin=True,
    )
    limit = None
    if max_connections or max_connections_per_ip:  # outermost: a full server checks nothing else
        limit = ConnectionLimitMiddleware(
            endpoint, max_connections=max_connections or None, max_per_ip=max_connections_per_ip or None
        )
    guarded: ASGIApp = limit or endpoint
    scrape = _metrics(pubsub.rooms, backpressure, ratelimit, session, limit) if metrics else None
    page = read("demo.html")
    client = BrowserClientApp()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            # Starts and closes the rooms (the broker), and closes the session store.
            await pubsub(scope, receive, send if resume is None else _closing_store(resume, send))
        elif kind == "websocket":
            if scope["path"] == path:
                await guarded(scope, receive, send)
            else:
                await deny(scope, send, 404, f"no WebSocket endpoint here; try {path}", refused_by="asgi-ws serve")
        elif kind == "http":
            route = scope["path"] if demo else None
            if scrape is not None and scope["path"] == "/metrics":
                await _respond(send, 200, scrape(), b"text/plain; version=0.0.4; charset=utf-8")
            elif route == "/":
                await _respond(send, 200, page, b"text/html; charset=utf-8")
            elif route == "/asgi-ws.js":
                await client(scope, receive, send)
            elif route == "/favicon.ico":
                await _respond(send, 204, b"", b"image/x-icon")
            else:
                await _respond(send, 404, b"not found", b"text/plain; charset=utf-8")

    return _Served(app, rooms, resume, session_store, random_keys=resume is not None and not resume_keys)


def _closing_store(resume: ResumeMiddleware, send: Send) -> Send:
    """The lifespan's ``send``: the session store's connections are closed before the
    shutdown is reported complete (uvicorn stops the loop soon after)."""

    async def send_closing_the_store(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            await resume.close()
        await send(message)

    return send_closing_the_store


def _metrics(rooms: Rooms, backpressure: Any, ratelimit: Any, session: Any, limit: Any) -> Any:
    try:
        from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("--metrics needs prometheus_client: pip install 'asgi-ws[metrics]'") from exc

    from .metrics import AsgiWsCollector

    registry = CollectorRegistry()
    resume = [session] if isinstance(session, ResumeMiddleware) else []
    collector = AsgiWsCollector(
        rooms=[rooms],
        backpressure=[backpressure],
        ratelimit=[ratelimit],
        resume=resume,
        connlimit=[limit] if limit is not None else [],
        names=["ws"],
    )
    registry.register(collector)
    ProcessCollector(registry=registry)
    return lambda: generate_latest(registry)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``asgi-ws serve: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser() -> _Parser:
    parser = _Parser(prog="asgi-ws", description="asgi_ws command line", formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the pub/sub server and its demo page under uvicorn",
        description="Serve PubSubApp behind the asgi_ws middlewares, its demo page and the browser client.",
        epilog="exit status: 0 after a shutdown, 1 when something cannot be reached or is not installed, "
        "2 for an invalid command line",
        formatter_class=_Help,
    )
    serve.add_argument(
        "--broker",
        default=os.environ.get("ASGI_WS_BROKER", "memory://?history=1000"),
        help="memory://?history=1000, redis://...[?history=N], postgres://..., nats://... [env ASGI_WS_BROKER]; "
        "history lets resumed clients get what was published while they were away",
    )
    serve.add_argument(
        "--resume-window",
        type=float,
        default=120.0,
        help="seconds a dropped client can resume its session (0: no resumption)",
    )
    serve.add_argument(
        "--session-store",
        default=os.environ.get("ASGI_WS_SESSION_STORE", "memory://"),
        help="memory:// (one process) or redis://... shared by the processes [env ASGI_WS_SESSION_STORE]",
    )
    serve.add_argument(
        "--namespace", default="asgi_ws", help="channel namespace on the broker: servers sharing one form a cluster"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--path", default="/ws", help="path of the WebSocket endpoint")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allowed page origin besides same-origin, e.g. https://app.example.com (repeatable; "
        "default: same-origin pages only)",
    )
    serve.add_argument(
        "--allow-any-origin", action="store_true", help="allow pages of every origin (public endpoints only)"
    )
    serve.add_argument(
        "--allow-missing-origin",
        action="store_true",
        help="allow handshakes without an Origin header: non-browser clients (asgi_ws.client, scripts) send none",
    )
    serve.add_argument("--heartbeat-interval", type=float, default=20.0, help="seconds between pings")
    serve.add_argument("--rate", type=float, default=50.0, help="messages per second per connection")
    serve.add_argument("--max-message-size", type=int, default=65_536, help="bytes, inbound and per publish")
    serve.add_argument(
        "--max-connections",
        type=int,
        default=default_max_connections(),
        help="open WebSockets at most in this process, beyond: 503; 0: no limit (default: %(default)s: 10000, "
        "or the open-file limit minus 100 when that is lower)",
    )
    serve.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=100,
        help="open WebSockets at most per client address (IPv6: per /64), beyond: 429 (0: no limit)",
    )
    serve.add_argument("--no-demo", action="store_true", help="do not serve the demo page")
    serve.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics (needs asgi-ws[metrics])"
    )
    serve.add_argument("--ws", default="auto", help="uvicorn WebSocket implementation")
    serve.add_argument(
        "--ws-ping-interval",
        type=float,
        default=20.0,
        help="seconds between uvicorn's protocol pings to every connection, and to answer them (0: none); "
        "they find dead clients that never said hello, which the heartbeat does not ping: with clients that all "
        "say hello (the asgi_ws clients do), 0 saves a second round per connection and interval",
    )
    serve.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="negotiate permessage-deflate with clients that offer it (uvicorn's ws_per_message_deflate); "
        "pays for large repetitive messages to few clients, costs CPU per member in fan-out: docs/compression.md "
        "(default: off)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        help="seconds a shutdown (SIGTERM, Ctrl+C) gives connections to flush before closing them with 1001",
    )
    serve.add_argument(
        "--gc",
        choices=("connections", "python"),
        default="connections",
        help="when the full garbage collection runs: 'connections': by connection churn (a quarter of the open "
        "ones closed, or every 10 minutes), not by the objects each message leaves behind (asgi_ws.server."
        "CollectorPolicy); 'python': Python's own thresholds",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (one listening socket, the kernel spreads the connections); "
        "they need a shared broker (redis://, postgres://, nats://, amqp://) and, to resume on any of them, a "
        "shared --session-store; a worker that dies is restarted; SIGTERM drains them all",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers
    serve.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="info", help="uvicorn's log level")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``asgi-ws``: 0 after a shutdown; a failure is one line on stderr and status 1 (runtime) or 2 (usage)."""
    args = parse_args(argv)
    try:
        import uvicorn  # noqa: F401 - asgi_ws.server runs it; say what is missing first
    except ModuleNotFoundError:
        return _fail("needs uvicorn: pip install 'asgi-ws[server]'")
    if args.workers < 1:
        return _fail("error: --workers must be at least 1", USAGE)
    if args.workers > 1:
        if args.broker.startswith("memory:"):
            return _fail(
                "error: --workers needs a broker the processes share (redis://, postgres://, nats://, amqp://): "
                "memory:// is one per process",
                USAGE,
            )
        return _supervise(args, list(sys.argv[1:] if argv is None else argv))
    from .log import uvicorn_log_config

    try:
        served = _build(
            broker=args.broker,
            namespace=args.namespace,
            path=args.path,
            allow_origins=args.allow_origin,
            allow_any_origin=args.allow_any_origin,
            allow_missing_origin=args.allow_missing_origin,
            heartbeat_interval=args.heartbeat_interval,
            rate=args.rate,
            max_message_size=args.max_message_size,
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            demo=not args.no_demo,
            metrics=args.metrics,
            resume_window=args.resume_window,
            session_store=args.session_store,
            resume_keys=[k for k in os.environ.get("ASGI_WS_RESUME_KEYS", "").split(",") if k],
        )
    except MissingDependencyError as exc:
        return _fail(str(exc))
    except ConfigurationError as exc:
        return _fail(f"error: {exc}", USAGE)
    options: dict[str, Any] = {"host": args.host, "port": args.port, "ws": args.ws, "log_level": args.log_level}
    options["ws_per_message_deflate"] = args.compression  # uvicorn's default is on
    ping = args.ws_ping_interval if args.ws_ping_interval > 0 else None
    options["ws_ping_interval"] = options["ws_ping_timeout"] = ping
    if args.compression:  # inflation bounded by the message limit (about twice it), not uvicorn's 16 MiB
        options["ws_max_size"] = args.max_message_size
    from .server import CollectorPolicy, run  # drains before uvicorn's own shutdown (docs/shutdown.md)

    sockets = None
    if args.reuse_port:  # a worker of --workers: its own socket in the port's SO_REUSEPORT group
        try:
            sockets = [_listen(args.host, args.port, listen=True)]
        except CannotStart as exc:
            return _fail(str(exc))

    async def start() -> None:  # on uvicorn's loop, before uvicorn logs or binds anything
        if sockets is None:
            _check_listen(args.host, args.port)
        await served.start()

    try:
        server = run(
            served.app,
            before_startup=start,
            drain_timeout=args.drain_timeout,
            collector=CollectorPolicy() if args.gc == "connections" else None,
            sockets=sockets,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            log_config=uvicorn_log_config(),
            lifespan="on",
            **options,
        )
    except CannotStart as exc:
        return _fail(str(exc))
    return 0 if server.started else FAILED


def _check_listen(host: str, port: int) -> None:
    """Raise CannotStart when ``host:port`` cannot be listened on (uvicorn would say so after the lifespan)."""
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        raise CannotStart(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


# -- --workers: a supervisor and its worker processes on one listening socket -----------------------

#: Seconds a worker must have run for its exit to be a crash to restart rather than a start-up failure.
WORKER_SETTLE = 5.0
#: Seconds between a worker's death and its restart.
WORKER_RESTART_DELAY = 0.5
#: Seconds a stopping worker gets past its drain and uvicorn's shutdown (the lifespan's
#: shutdown: the broker's goodbye, the session store's last writes) before it is killed.
WORKER_STOP_GRACE = 30.0


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``args.workers`` worker processes (``asgi-ws serve`` each, ``--workers 1``) on one
    port: each listens on its own socket of the port's ``SO_REUSEPORT`` group, so the kernel
    spreads new connections evenly over them (by the hash of their addresses: a worker that is
    slow to accept does not leave its share to the fastest, which could take more connections
    than its open-file limit during a reconnect storm), and a worker that is down leaves its
    share to the others. The supervisor holds the port bound (not listening) meanwhile.

    A worker that dies (a crash, SIGKILL) is restarted; one that fails at start-up (status 1 or
    2 within :data:`WORKER_SETTLE` seconds: a broker that cannot be reached) stops them all with
    its status. SIGTERM/SIGINT are passed on: every worker drains, and the supervisor returns 0
    once they have exited. Unless ``ASGI_WS_RESUME_KEYS`` is set, the supervisor makes one
    random key for all its workers: a session resumes on any of them, and after a worker's
    restart (not after the supervisor's).
    """
    import signal
    import subprocess
    import time

    log = logging.getLogger("asgi_ws.workers")
    if not log.handlers and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    try:
        listener = _listen(args.host, args.port, listen=False)
    except CannotStart as exc:
        return _fail(str(exc))
    env = dict(os.environ)
    if not env.get("ASGI_WS_RESUME_KEYS") and args.resume_window > 0:
        env["ASGI_WS_RESUME_KEYS"] = secrets.token_urlsafe(32)
        log.warning(
            "ASGI_WS_RESUME_KEYS is not set: the workers share a random key of this supervisor; "
            "sessions resume on any worker, and survive a worker's restart but not the supervisor's"
        )
    if args.session_store.startswith("memory:") and args.resume_window > 0:
        log.warning(
            "--session-store memory:// is one per worker: a client that reconnects to another worker cannot "
            "resume (it is told resume_failed and starts afresh); use redis:// to resume on any worker"
        )
    command = [sys.executable, "-m", "asgi_ws.cli", *argv, "--workers", "1", "--reuse-port"]
    stopping = False
    # After SIGTERM a worker drains (--drain-timeout), then uvicorn's shutdown and the lifespan's
    # (the broker, the session store) run: one still alive well past that is killed.
    stop_deadline = math.inf
    patience = args.drain_timeout + SHUTDOWN_GRACE + WORKER_STOP_GRACE

    def start(index: int) -> tuple[subprocess.Popen[bytes], float]:
        proc = subprocess.Popen(command, env=env, preexec_fn=_end_with_parent)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc, time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping, stop_deadline
        if not stopping:
            log.info("stopping %d workers (they drain)", len(workers))
            stop_deadline = time.monotonic() + patience
        stopping = True
        for proc, _ in workers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    workers = [start(i) for i in range(args.workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while True:
            alive = False
            for index, (proc, started) in enumerate(workers):
                code = proc.poll()
                if code is None:
                    alive = True
                    continue
                if stopping:
                    continue
                if code in (FAILED, USAGE) and time.monotonic() - started < WORKER_SETTLE:
                    log.error("worker %d could not start (status %d): stopping", index, code)
                    status = code
                    stop(signal.SIGTERM, None)
                    continue
                log.warning("worker %d (pid %d) exited with status %d: restarting it", index, proc.pid, code)
                time.sleep(WORKER_RESTART_DELAY)
                workers[index] = start(index)
                alive = True
            if stopping and not alive:
                return status
            if stopping and time.monotonic() > stop_deadline:
                for index, (proc, _) in enumerate(workers):
                    if proc.poll() is None:
                        log.warning("worker %d (pid %d) still running %.0f s after SIGTERM: killing it",
                                    index, proc.pid, patience)  # fmt: skip
                        proc.kill()
                stop_deadline = math.inf
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.close()


def _end_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when the supervisor dies, whatever kills it (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _listen(host: str, port: int, *, listen: bool) -> socket.socket:
    """A socket of ``host:port``'s ``SO_REUSEPORT`` group: a worker's (listening), or the
    supervisor's (bound only: it holds the port and receives no connection)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)  # uvicorn's backlog
    except OSError as exc:
        raise CannotStart(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _fail(message: str, status: int = FAILED) -> int:
    print(f"asgi-ws serve: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
