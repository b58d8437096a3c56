"""``asgi-ws serve``: the pub/sub server with its demo page, under uvicorn.

    asgi-ws serve [--broker memory://] [--host 127.0.0.1] [--port 8000] [--allow-origin URL ...]

Serves the application of :mod:`asgi_ws.serve_app` (``PubSubApp`` at ``--path`` behind the
asgi_ws middlewares, ``/healthz`` and ``/readyz``, the demo page) under uvicorn; this module is
the command line: its options, the start-up checks, and ``--workers`` (:mod:`asgi_ws.workers`).
Several processes on one Redis, PostgreSQL or NATS broker form one cluster.
On SIGTERM/SIGINT it drains (``asgi_ws.server``): queued messages are flushed, connections closed
with 1001, new handshakes refused with 503, within ``--drain-timeout`` seconds.

Before uvicorn starts, the command checks its address, connects the broker and asks the session
store once. A failure is one line on stderr: exit status 1 for what cannot be reached or is not
installed (the line names the ``pip install 'asgi-ws[...]'`` to run), 2 for a command line that
cannot work (an unknown broker scheme, a bad ``--log-level``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .drain import DRAIN_TIMEOUT
from .exceptions import ConfigurationError, MissingDependencyError
from .middleware.connlimit import default_max_connections
from .serve_app import CannotStart, _build, build_app
from .workers import FAILED, USAGE, listen_socket, supervise

#: Seconds uvicorn's own shutdown may take after the drain (connections the drain left get 1012).
SHUTDOWN_GRACE = 5

#: uvicorn's log levels, the values of ``--log-level``.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


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
        try:
            return supervise(args, list(sys.argv[1:] if argv is None else argv), shutdown_grace=SHUTDOWN_GRACE)
        except CannotStart as exc:
            return _fail(str(exc))
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
            sockets = [listen_socket(args.host, args.port, listen=True)]
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


def _fail(message: str, status: int = FAILED) -> int:
    print(f"asgi-ws serve: {message}", file=sys.stderr)
    return status


__all__ = ["build_app", "main", "parse_args"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
