"""``asgi-ws serve``: the pub/sub server with its demo page, under uvicorn.

    asgi-ws serve [--broker memory://] [--host 127.0.0.1] [--port 8000] [--allow-origin URL ...]

Serves ``PubSubApp`` at ``--path`` (``/ws``) behind OriginMiddleware (same-origin always
allowed, plus ``--allow-origin``), HeartbeatMiddleware, ResumeMiddleware (``--resume-window``),
BackpressureMiddleware and RateLimitMiddleware; the demo page at ``/`` and the browser client
at ``/asgi-ws.js``. Several processes on one Redis, PostgreSQL or NATS broker form one cluster.
On SIGTERM/SIGINT it drains (``asgi_ws.server``): queued messages are flushed, connections closed
with 1001, new handshakes refused with 503, within ``--drain-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from .deny import deny
from .drain import DRAIN_TIMEOUT
from .middleware.backpressure import BackpressureMiddleware
from .middleware.connlimit import ConnectionLimitMiddleware, default_max_connections
from .middleware.heartbeat import HeartbeatMiddleware
from .middleware.origin import OriginMiddleware
from .middleware.ratelimit import RateLimitMiddleware
from .middleware.resume import ResumeMiddleware
from .pubsub import PubSubApp
from .rooms import Rooms
from .types import ASGIApp, Message, Receive, Scope, Send

#: Seconds uvicorn's own shutdown may take after the drain (connections the drain left get 1012).
SHUTDOWN_GRACE = 5

STATIC = {
    "/": ("demo.html", b"text/html; charset=utf-8"),
    "/asgi-ws.js": ("asgi-ws.js", b"text/javascript; charset=utf-8"),
}


def build_app(
    *,
    broker: str = "memory://?history=1000",
    namespace: str = "asgi_ws",
    path: str = "/ws",
    allow_origins: Sequence[str] = (),
    allow_any_origin: bool = False,
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
    before any other check (ConnectionLimitMiddleware, outermost).
    """
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
            logging.getLogger("asgi_ws").warning(
                "ASGI_WS_RESUME_KEYS is not set: resume tokens are signed with a random key of this process, "
                "so no session survives a restart or resumes on another process"
            )
            resume.signer.unknown_key_hint = "keys change on restart unless ASGI_WS_RESUME_KEYS is set"
    endpoint = OriginMiddleware(
        HeartbeatMiddleware(session, interval=heartbeat_interval, timeout=heartbeat_interval),
        allow_origins=["*"] if allow_any_origin else list(allow_origins),
        allow_same_origin=True,
    )
    limit = None
    if max_connections or max_connections_per_ip:  # outermost: a full server checks nothing else
        limit = ConnectionLimitMiddleware(
            endpoint, max_connections=max_connections or None, max_per_ip=max_connections_per_ip or None
        )
    guarded: ASGIApp = limit or endpoint
    scrape = _metrics(pubsub.rooms, backpressure, ratelimit, session, limit) if metrics else None
    files = {route: (resources.files("asgi_ws.static") / name).read_bytes() for route, (name, _) in STATIC.items()}

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
            elif route in files:
                await _respond(send, 200, files[route], STATIC[route][1])
            elif route == "/favicon.ico":
                await _respond(send, 204, b"", b"image/x-icon")
            else:
                await _respond(send, 404, b"not found", b"text/plain; charset=utf-8")

    return app


def _closing_store(resume: ResumeMiddleware, send: Send) -> Send:
    """The lifespan's ``send``: the session store's connections are closed before the
    shutdown is reported complete (uvicorn stops the loop soon after)."""

    async def send_closing_the_store(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            await resume.close()
        await send(message)

    return send_closing_the_store


def _metrics(rooms: Rooms, backpressure: Any, ratelimit: Any, session: Any, limit: Any) -> Any:
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="asgi-ws", description="asgi_ws command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the pub/sub server and its demo page under uvicorn")
    serve.add_argument(
        "--broker",
        default=os.environ.get("ASGI_WS_BROKER", "memory://?history=1000"),
        help="memory://?history=1000 (default), redis://...[?history=N], postgres://..., nats://... "
        "[env ASGI_WS_BROKER]; history lets resumed clients get what was published while they were away",
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
        help="memory:// (default, one process) or redis://... shared by the processes [env ASGI_WS_SESSION_STORE]",
    )
    serve.add_argument(
        "--namespace", default="asgi_ws", help="channel namespace on the broker: servers sharing one form a cluster"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--path", default="/ws", help="path of the WebSocket endpoint (default /ws)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allowed page origin besides same-origin, e.g. https://app.example.com (repeatable)",
    )
    serve.add_argument("--allow-any-origin", action="store_true", help="allow every origin (public endpoints only)")
    serve.add_argument("--heartbeat-interval", type=float, default=20.0)
    serve.add_argument("--rate", type=float, default=50.0, help="messages per second per connection")
    serve.add_argument("--max-message-size", type=int, default=65_536)
    serve.add_argument(
        "--max-connections",
        type=int,
        default=default_max_connections(),
        help="open WebSockets at most in this process, beyond: 503 (default: 10000, or the open-file limit "
        "minus 100; 0: no limit)",
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
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        help="seconds a shutdown (SIGTERM, Ctrl+C) gives connections to flush before closing them with 1001",
    )
    serve.add_argument("--log-level", default="info")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvicorn  # noqa: F401 - asgi_ws.server runs it; say what is missing first
    except ModuleNotFoundError:
        print("asgi-ws serve needs uvicorn: pip install 'asgi-ws[server]'", file=sys.stderr)
        return 2
    from .log import uvicorn_log_config

    app = build_app(
        broker=args.broker,
        namespace=args.namespace,
        path=args.path,
        allow_origins=args.allow_origin,
        allow_any_origin=args.allow_any_origin,
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
    options: dict[str, Any] = {"host": args.host, "port": args.port, "ws": args.ws, "log_level": args.log_level}
    from .server import run  # drains before uvicorn's own shutdown (docs/shutdown.md)

    server = run(
        app,
        drain_timeout=args.drain_timeout,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        log_config=uvicorn_log_config(),
        lifespan="on",
        **options,
    )
    return 0 if server.started else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
