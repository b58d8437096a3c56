"""RateLimitMiddleware: inbound floods and oversized messages get a documented policy, not a crash.

Every inbound message (control messages included) passes a per-connection token bucket and,
optionally, a bucket shared by every connection with the same key (a user id, a client IP)
kept in a pluggable store. ``max_message_size`` closes the connection with 1009 on a larger
message: a second line behind the server's own limit (uvicorn's ``ws_max_size``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .._repeated import RepeatedLog
from .._scope import client_address, log_path
from ..close_codes import CloseCode, check_close_code
from ..connection import CLOSE, DROP, Connection, attach_session
from ..exceptions import ConfigurationError
from ..types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("asgi_ws.ratelimit")
#: One line per connection over its rate, but many clients can be: at most one a minute then.
_over_rate = RepeatedLog(logger, 60.0)

RatePolicy = Literal["drop", "delay", "close"]
KeyOf = Callable[[Scope], "str | None"]

#: A dropped-message error is sent to an opted-in client at most this often (seconds).
ERROR_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Gcra:
    """The rate decision, free of I/O: GCRA, the generic cell rate algorithm.

    It makes the same decisions as a token bucket refilled at ``rate`` tokens per second and
    holding ``burst``, but its whole state is one number, the *theoretical arrival time*
    (``tat``): the time at which the bucket would be full again. A message at ``now`` may
    pass when ``tat - now <= (burst - 1) / rate``; passing moves ``tat`` on by ``1 / rate``.

    Args:
        rate: messages per second.
        burst: messages allowed at once after a quiet period (at least 1).
    """

    rate: float
    burst: float

    @property
    def emission(self) -> float:
        """Seconds between two messages at the steady rate."""
        return 1.0 / self.rate

    @property
    def tolerance(self) -> float:
        """How far ahead of the steady rate a burst may run, in seconds."""
        return (self.burst - 1.0) / self.rate

    def take(self, tat: float, now: float, *, reserve: bool = False) -> tuple[float, float]:
        """Decide on one message at ``now`` given state ``tat``.

        Returns ``(new_tat, wait)``: ``wait`` is 0.0 when the message may pass now, else the
        seconds until it may. With ``reserve`` the message always takes its slot (the caller
        holds it back ``wait`` seconds); without, a refused message leaves ``tat`` unchanged.
        """
        tat = max(tat, now)
        wait = tat - now - self.tolerance
        if wait <= 0.0:
            return tat + self.emission, 0.0
        return (tat + self.emission if reserve else tat), wait


@runtime_checkable
class RateLimitStore(Protocol):
    """Where shared buckets live. ``acquire`` takes one token from the bucket of ``key``.

    With ``reserve=False`` it returns 0.0 when a token was taken, else the seconds until one
    would be there (nothing taken). With ``reserve=True`` it always takes one, going into
    debt, and returns the seconds to wait before the message may pass.
    """

    async def acquire(self, key: str, rate: float, burst: float, *, reserve: bool) -> float: ...


class MemoryRateLimitStore:
    """Shared limits in this process's memory (the default store): one number per key.

    Args:
        max_keys: keys kept at most; beyond it, keys whose bucket is full again (idle) are
            forgotten first, then the oldest, so a client cycling through keys cannot grow memory.
        clock: time source in seconds (the monotonic clock by default).
    """

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] | None = None) -> None:
        if max_keys < 1:
            raise ConfigurationError("max_keys must be positive")
        self.max_keys = max_keys
        self._clock = clock or time.monotonic
        self._tats: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def acquire(self, key: str, rate: float, burst: float, *, reserve: bool) -> float:
        now = self._clock()
        tat = self._tats.get(key)
        if tat is None and len(self._tats) >= self.max_keys:
            self._prune(now)
        self._tats[key], wait = Gcra(rate, burst).take(tat or now, now, reserve=reserve)
        return wait

    def _prune(self, now: float) -> None:
        for key in [k for k, tat in self._tats.items() if tat <= now]:  # full again: holds no information
            del self._tats[key]
        while len(self._tats) >= self.max_keys:
            del self._tats[next(iter(self._tats))]  # dicts keep insertion order: oldest first


@dataclass(slots=True)
class RateLimitStats:
    """Counters over every connection of one RateLimitMiddleware."""

    dropped: int = 0
    delayed: int = 0
    closed: int = 0
    oversized: int = 0


class _InboundLimiter:
    """The limits of one connection, consulted by the connection's receive path.

    The per-connection rate is :class:`Gcra` written out in :meth:`check` (this runs for
    every inbound message; ``tests/middleware/test_ratelimit.py`` checks that both decide alike).
    """

    __slots__ = (
        "conn",
        "delay",
        "dropped_since_error",
        "emission",
        "last_error",
        "max_size",
        "mw",
        "rated",
        "shared",
        "short",
        "tat",
        "tolerance",
        "warned",
    )

    def __init__(self, mw: RateLimitMiddleware, conn: Connection, shared: str | None) -> None:
        self.mw = mw
        self.conn = conn
        self.shared = shared
        # Read on every inbound message: kept here rather than looked up through mw/conn.
        self.rated = mw.rate is not None
        gcra = Gcra(mw.rate or 1.0, mw.burst)
        self.emission = gcra.emission
        self.tolerance = gcra.tolerance
        self.tat = 0.0
        self.delay = mw.delay
        self.max_size = mw.max_message_size
        # A message of at most this many characters or bytes is within the size limit whatever
        # its encoding (UTF-8 needs at most four bytes a character): no arithmetic needed.
        self.short = (mw.max_message_size // 4) if mw.max_message_size is not None else 0
        self.last_error = -ERROR_INTERVAL
        self.dropped_since_error = 0
        self.warned = False

    def check(self, message: Message, now: float) -> float:
        """Size and per-connection rate at time ``now``: 0.0 admits, > 0 delays, DROP or CLOSE."""
        limit = self.max_size
        if limit is not None:
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > self.short and (len(data) > limit or (isinstance(data, str) and len(data.encode()) > limit)):
                self.mw.stats.oversized += 1
                self.conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return CLOSE
        if not self.rated:
            return 0.0
        tat = self.tat if self.tat > now else now
        wait = tat - now - self.tolerance
        if wait <= 0.0:
            self.tat = tat + self.emission
            return 0.0
        if self.delay:  # take the slot anyway and hold the message until it is due
            self.tat = tat + self.emission
            self.mw.stats.delayed += 1
            return wait
        return self._over_limit()

    async def check_shared(self) -> float:
        mw = self.mw
        assert self.shared is not None and mw.shared_rate is not None and mw.store is not None
        wait = await mw.store.acquire(self.shared, mw.shared_rate, mw.shared_burst, reserve=mw.policy == "delay")
        if not wait:
            return 0.0
        if mw.policy == "delay":
            mw.stats.delayed += 1
            return wait
        return self._over_limit()

    def _over_limit(self) -> float:
        mw, conn = self.mw, self.conn
        if mw.policy == "close":
            mw.stats.closed += 1
            conn.close(mw.close_code, "rate limit exceeded")
            return CLOSE
        mw.stats.dropped += 1
        self.dropped_since_error += 1
        if not self.warned:
            self.warned = True
            _over_rate.warning(
                '%s - "WebSocket %s" over its rate limit: dropping messages',
                client_address(conn.scope),
                log_path(conn.scope),
            )
        router = conn._control
        now = conn.time()
        if router is not None and router.opted_in and now - self.last_error >= ERROR_INTERVAL:
            # Plain clients get no control messages; opted-in ones at most one per second.
            router.send(
                "error",
                {
                    "code": "rate_limited",
                    "message": "message dropped: over the rate limit",
                    "dropped": self.dropped_since_error,
                },
            )
            self.last_error = now
            self.dropped_since_error = 0
        return DROP


class RateLimitMiddleware:
    """Limit what clients send: a message rate per connection (and per shared key), a message size.

    Args:
        app: the ASGI application to wrap.
        rate: messages per second allowed per connection (refill rate); None: no
            per-connection rate limit.
        burst: messages a connection may send at once after being quiet (bucket size);
            default ``max(1, rate)``.
        policy: over the limit, ``"drop"`` the message (default; an opted-in client gets a
            ``rate_limited`` error, at most one a second), ``"delay"`` it until a token is
            there (the client's reads are slowed: TCP pushes back), or ``"close"`` the
            connection with ``close_code``.
        max_message_size: inbound messages larger than this many bytes close the connection
            with 1009 ``message too big``; None: no limit (the server's own still applies).
        shared_key: optional ``shared_key(scope) -> str | None``: connections with the same
            key share one bucket (per user: ``lambda s: s["user"].identity``; per IP:
            ``lambda s: s["client"][0]``). None from it: no shared limit for that connection.
        shared_rate: messages per second of a shared bucket (required with ``shared_key``).
        shared_burst: size of a shared bucket; default ``max(1, shared_rate)``.
        store: where shared buckets live (default: a :class:`MemoryRateLimitStore`, one
            process); any :class:`RateLimitStore`.
        close_code: code of the ``close`` policy (default 1008, Policy Violation).

    Raises:
        ConfigurationError: nothing to limit, a non-positive rate, an unknown policy, a
            ``close_code`` that cannot be sent in a close frame.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float | None = None,
        burst: float | None = None,
        policy: RatePolicy = "drop",
        max_message_size: int | None = None,
        shared_key: KeyOf | None = None,
        shared_rate: float | None = None,
        shared_burst: float | None = None,
        store: RateLimitStore | None = None,
        close_code: int = CloseCode.POLICY_VIOLATION,
    ) -> None:
        if policy not in ("drop", "delay", "close"):
            raise ConfigurationError(f"policy must be 'drop', 'delay' or 'close', not {policy!r}")
        if rate is not None and rate <= 0:
            raise ConfigurationError("rate must be positive messages per second, or None")
        if max_message_size is not None and max_message_size < 1:
            raise ConfigurationError("max_message_size must be a positive number of bytes, or None")
        if (shared_key is None) != (shared_rate is None):
            raise ConfigurationError("shared_key and shared_rate go together")
        if shared_rate is not None and shared_rate <= 0:
            raise ConfigurationError("shared_rate must be positive")
        if rate is None and shared_key is None and max_message_size is None:
            raise ConfigurationError("RateLimitMiddleware limits nothing: set rate, shared_key or max_message_size")
        self.app = app
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1.0, rate or 1.0))
        if self.burst < 1:
            raise ConfigurationError("burst must be at least 1")
        self.policy = policy
        self.delay = policy == "delay"
        self.max_message_size = max_message_size
        self.shared_key = shared_key
        self.shared_rate = shared_rate
        self.shared_burst = float(shared_burst if shared_burst is not None else max(1.0, shared_rate or 1.0))
        self.store: RateLimitStore | None = store or (MemoryRateLimitStore() if shared_key else None)
        self.close_code = check_close_code(close_code)
        #: Counters over every connection.
        self.stats = RateLimitStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        scope, conn, receive, send = attach_session(scope, receive, send)
        shared = self.shared_key(scope) if self.shared_key is not None else None
        conn.set_limiter(_InboundLimiter(self, conn, shared))
        await conn.run(self.app, scope, receive, send)


__all__ = ["Gcra", "MemoryRateLimitStore", "RateLimitMiddleware", "RateLimitStats", "RateLimitStore"]
