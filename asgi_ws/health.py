"""``/healthz`` and ``/readyz``: what a load balancer and an orchestrator ask an ``asgi-ws serve`` process.

``GET /healthz`` (liveness, and the one check a proxy needs): **200** ``ok`` while the process
serves, **503** ``draining`` from the moment a drain starts (SIGTERM: :func:`asgi_ws.drain.drain`)
until the process exits. The drain keeps the listener open while it flushes and closes the
connections, so a proxy checking ``/healthz`` (HAProxy's ``option httpchk``) takes the worker
out of rotation before it stops listening; the handshakes that reach it meanwhile are refused
with 503 all the same, which the proxy retries elsewhere. No I/O: it answers whatever the
broker or the session store are doing (a Redis outage must not take every worker out of a
proxy at once: the workers share that Redis, and serving without it beats serving nothing).

``GET /readyz`` (readiness, for monitoring and orchestrators, not a proxy's rotation): 503
``draining`` as ``/healthz``, and 503 with the cause when the session store or the broker does
not answer: the store is asked for a session that does not exist, the broker how many channels
it is subscribed to (for Redis, a round trip on its subscriber connection), each within
:data:`READY_TIMEOUT` seconds. Concurrent requests share one check, and its result is reused for
:data:`READY_CACHE` seconds: a client polling ``/readyz`` in a loop costs the store one request
a second at most. The body names the failing part and its error (the URL without password):
keep ``/readyz`` away from the Internet (``deploy/nginx.conf`` does).

Both answer ``GET`` and ``HEAD``, ``text/plain``, never cached. The decisions are the pure
:func:`health` and :func:`readiness`; :class:`Probes` is the I/O around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .drain import draining
from .types import Receive, Scope, Send

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
#: Seconds each part of a readiness check may take before it counts as unreachable.
READY_TIMEOUT = 2.0
#: Seconds a readiness result is reused.
READY_CACHE = 1.0

OK, UNAVAILABLE = 200, 503
DRAINING = b"draining: this server is shutting down, new connections go elsewhere"


def health(is_draining: bool) -> tuple[int, bytes]:
    """The answer to ``GET /healthz``: 200 ``ok``, or 503 while the process drains."""
    return (UNAVAILABLE, DRAINING) if is_draining else (OK, b"ok")


def readiness(is_draining: bool, failures: dict[str, str]) -> tuple[int, bytes]:
    """The answer to ``GET /readyz`` given the parts that failed (name: cause)."""
    if is_draining:
        return UNAVAILABLE, DRAINING
    if failures:
        causes = "; ".join(f"{part}: {cause}" for part, cause in sorted(failures.items()))
        return UNAVAILABLE, f"not ready: {causes}".encode()
    return OK, b"ready"


#: A readiness check of one part: returns normally when the part answers.
Check = Callable[[], Awaitable[object]]


@dataclass
class _Result:
    failures: dict[str, str]
    at: float


class Probes:
    """The ASGI side of ``/healthz`` and ``/readyz`` (``http`` scopes only).

    Args:
        checks: the readiness checks by part name (``"session store"``, ``"broker"``), each
            given :data:`READY_TIMEOUT` seconds.
    """

    paths = (HEALTH_PATH, READY_PATH)

    def __init__(self, checks: dict[str, Check] | None = None) -> None:
        self.checks = dict(checks or {})
        self._last: _Result | None = None
        self._running: asyncio.Task[_Result] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed", head=False, allow=True)
            return
        if scope["path"] == HEALTH_PATH:
            status, body = health(draining())
        elif draining():
            status, body = readiness(True, {})
        else:
            status, body = readiness(False, (await self.ready()).failures)
        await _respond(send, status, body, head=scope["method"] == "HEAD")

    async def ready(self) -> _Result:
        """The latest readiness result: reused for :data:`READY_CACHE` s, one check at a time."""
        loop = asyncio.get_running_loop()
        if self._last is not None and loop.time() - self._last.at < READY_CACHE:
            return self._last
        if self._running is None or self._running.done():
            self._running = loop.create_task(self._check())
        self._last = await asyncio.shield(self._running)
        return self._last

    async def _check(self) -> _Result:
        names = list(self.checks)
        outcomes = await asyncio.gather(*(_within(self.checks[n]) for n in names))
        failures = {name: cause for name, cause in zip(names, outcomes, strict=True) if cause is not None}
        return _Result(failures, asyncio.get_running_loop().time())


async def _within(check: Check) -> str | None:
    """None when ``check`` answers within :data:`READY_TIMEOUT` s, else what went wrong."""
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT)
    except asyncio.TimeoutError:
        return f"no answer within {READY_TIMEOUT:g} s"
    except Exception as exc:  # the cause is the answer: reported in the body, nothing swallowed
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def _respond(send: Send, status: int, body: bytes, *, head: bool, allow: bool = False) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
    headers.append((b"content-length", str(len(body)).encode()))
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


__all__ = ["HEALTH_PATH", "READY_PATH", "READY_CACHE", "READY_TIMEOUT", "Probes", "health", "readiness"]
