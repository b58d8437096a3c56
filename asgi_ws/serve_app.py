"""The application ``asgi-ws serve`` runs, and what it starts before uvicorn does.

:func:`build_app` composes ``PubSubApp`` behind the asgi_ws middlewares at ``path`` (``/ws``):
ConnectionLimitMiddleware (outermost), OriginMiddleware (same-origin always allowed, plus
``allow_origins``), HeartbeatMiddleware, ResumeMiddleware, BackpressureMiddleware and
RateLimitMiddleware. Over HTTP it serves ``/healthz`` and ``/readyz`` (:mod:`asgi_ws.health`),
``/metrics`` when asked, and unless ``demo=False`` the demo page at ``/`` and the browser client
at ``/asgi-ws.js``. The command line is :mod:`asgi_ws.cli`'s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple

from .brokers.base import redact_url
from .deny import deny
from .exceptions import BrokerError, MissingDependencyError
from .health import Check, Probes
from .middleware.backpressure import BackpressureMiddleware
from .middleware.connlimit import ConnectionLimitMiddleware
from .middleware.heartbeat import HeartbeatMiddleware
from .middleware.origin import OriginMiddleware
from .middleware.ratelimit import RateLimitMiddleware
from .middleware.resume import ResumeMiddleware
from .pubsub import PubSubApp
from .rooms import Rooms
from .static import BrowserClientApp, read
from .types import ASGIApp, Message, Receive, Scope, Send

#: Seconds the start-up check waits for the session store to answer.
STORE_CHECK_TIMEOUT = 10.0
#: The session the start-up check and ``/readyz`` ask the store for (none has this id).
READY_CHECK_SESSION = "asgi-ws-serve:start-check"


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
                await asyncio.wait_for(self.resume.store.inspect(READY_CHECK_SESSION), STORE_CHECK_TIMEOUT)
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
    checks: dict[str, Check] = {"broker": rooms.broker.subscription_count}
    if resume is not None:
        store = resume.store
        checks["session store"] = lambda: store.inspect(READY_CHECK_SESSION)
    probes = Probes(checks)

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
            if scope["path"] in probes.paths:
                await probes(scope, receive, send)
            elif scrape is not None and scope["path"] == "/metrics":
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


__all__ = ["STORE_CHECK_TIMEOUT", "CannotStart", "build_app"]
