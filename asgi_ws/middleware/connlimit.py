"""ConnectionLimitMiddleware: cap open WebSocket connections, in all and per client, before accept.

uvicorn's ``--limit-concurrency`` does not count WebSocket upgrades, and every open socket
holds memory, a file descriptor and a share of every broadcast: without a cap, a flood of
handshakes (or one client opening thousands) takes the whole process down. This middleware
counts the connections that passed it and refuses the next one before accept, through the
library's one rejection path: 503 when the process is full, 429 when one client address or
one user holds its share, each with a ``Retry-After`` header.

The decision lives in the pure :class:`ConnectionCounter`; the middleware reads the keys from
the scope, refuses or runs the app, and releases the count in a ``finally``, so a connection
is released however it ends (the app returned or raised, the client dropped, an inner
middleware refused, the task was cancelled).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Hashable

from .._scope import log_safe, user_identity
from ..deny import deny
from ..exceptions import ConfigurationError
from ..types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("asgi_ws.connlimit")

#: Which limit refused a connection: the process's, a client address's, a user's.
LIMITS = ("global", "ip", "user")


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{name} must be a positive integer, or None for no limit")
    return value


def _release(counts: dict[Hashable, int], key: Hashable) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]  # memory follows the clients connected now, not every client ever seen


class ConnectionCounter:
    """The counting decision, free of ASGI: admit a connection or name the limit it is over.

    :meth:`admit` and :meth:`release` never await, so on an event loop the counts are exact
    without a lock: no other handshake can run between a check and its increment. A per-key
    count is removed when it falls to zero, so memory follows the clients connected now.

    Args:
        max_connections: connections at most in all; None: no limit.
        max_per_ip: connections at most per client key; None: no limit.
        max_per_user: connections at most per user key; None: no limit.
    """

    __slots__ = ("max_connections", "max_per_ip", "max_per_user", "open", "per_ip", "per_user")

    def __init__(
        self, max_connections: int | None = None, max_per_ip: int | None = None, max_per_user: int | None = None
    ) -> None:
        self.max_connections = _positive("max_connections", max_connections)
        self.max_per_ip = _positive("max_per_ip", max_per_ip)
        self.max_per_user = _positive("max_per_user", max_per_user)
        #: Connections admitted and not yet released.
        self.open = 0
        #: Open connections per client key and per user key (keys with none are absent).
        self.per_ip: dict[Hashable, int] = {}
        self.per_user: dict[Hashable, int] = {}

    def admit(self, ip: Hashable | None = None, user: Hashable | None = None) -> str | None:
        """Count a connection of ``ip`` and ``user`` (None: not counted per key) and return None,
        or return the limit it is over (``"global"``, ``"ip"``, ``"user"``) and count nothing."""
        if self.max_connections is not None and self.open >= self.max_connections:
            return "global"
        if ip is not None and self.max_per_ip is not None and self.per_ip.get(ip, 0) >= self.max_per_ip:
            return "ip"
        if user is not None and self.max_per_user is not None and self.per_user.get(user, 0) >= self.max_per_user:
            return "user"
        self.open += 1
        if ip is not None:
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        if user is not None:
            self.per_user[user] = self.per_user.get(user, 0) + 1
        return None

    def release(self, ip: Hashable | None = None, user: Hashable | None = None) -> None:
        """Forget a connection :meth:`admit` counted, with the same keys."""
        self.open -= 1
        if ip is not None:
            _release(self.per_ip, ip)
        if user is not None:
            _release(self.per_user, user)


def default_max_connections(ceiling: int = 10_000, reserve: int = 100) -> int:
    """``ceiling``, or fewer when this process may not open that many files.

    Each connection holds a file descriptor. Past the process's limit (``ulimit -n``, often
    1,024) the server can no longer accept: uvicorn logs accept errors and clients time out.
    Capped ``reserve`` below it, the extra clients get a clean 503 instead, and the server
    keeps descriptors for the handshakes it refuses, its broker and its logs.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return ceiling
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(1, min(ceiling, soft - reserve))


def client_key(scope: Scope, ipv6_prefix: int = 64) -> str | None:
    """The per-IP key of a connection: its address as the server reports it in ``scope["client"]``.

    Behind a reverse proxy that is the address uvicorn took from ``X-Forwarded-For`` when the
    proxy is trusted (``--proxy-headers --forwarded-allow-ips``); this function never reads
    the header itself. An IPv6 address is grouped by its ``/ipv6_prefix`` network (one host
    usually holds a whole /64), an IPv4-mapped one is its IPv4 address. None when the server
    gave no address (a Unix socket): no per-IP limit then.
    """
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])
    if ":" not in host or ipv6_prefix >= 128:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


class ConnectionLimitMiddleware:
    """Refuse WebSocket handshakes beyond a number of open connections, in all and per client.

    Args:
        app: the ASGI application to wrap.
        max_connections: open connections at most through this middleware (in this process);
            beyond, 503 ``server at its connection limit``. None: no limit.
        max_per_ip: open connections at most per client address (``scope["client"]``, see
            :func:`client_key`); beyond, 429 ``too many connections from this address``.
        max_per_user: open connections at most per authenticated user
            (``scope["user"].identity``); beyond, 429 ``too many connections for this user``.
            Needs the middleware **inside** AuthMiddleware; anonymous users are not counted
            per user.
        ipv6_prefix: IPv6 clients are counted per network of this prefix length (default
            64, the usual allocation to one host or household; 128 counts each address).
        retry_after: seconds sent in the ``Retry-After`` header of a refusal; None: no header.

    A connection counts from the moment this middleware admits it (handshake checks of inner
    middlewares included) until the app it wraps returns, raises or is cancelled. Counters
    are in :attr:`counter` (open now) and :attr:`refused` (by limit).

    Raises:
        ConfigurationError: no limit, or a limit that is not a positive integer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_connections: int | None = None,
        max_per_ip: int | None = None,
        max_per_user: int | None = None,
        ipv6_prefix: int = 64,
        retry_after: int | None = 5,
    ) -> None:
        if max_connections is None and max_per_ip is None and max_per_user is None:
            raise ConfigurationError(
                "ConnectionLimitMiddleware limits nothing: set max_connections, max_per_ip and/or max_per_user"
            )
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int) or not 1 <= ipv6_prefix <= 128:
            raise ConfigurationError("ipv6_prefix must be a prefix length from 1 to 128")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
        ):
            raise ConfigurationError("retry_after must be whole seconds (an int >= 0), or None")
        self.app = app
        self.counter = ConnectionCounter(max_connections, max_per_ip, max_per_user)
        self.ipv6_prefix = ipv6_prefix
        self._headers = [("retry-after", str(retry_after))] if retry_after is not None else []
        #: Handshakes refused, by the limit that refused them.
        self.refused = dict.fromkeys(LIMITS, 0)
        self._warned_no_user = False

    @property
    def open(self) -> int:
        """Connections admitted by this middleware and still running."""
        return self.counter.open

    def _user(self, scope: Scope) -> Hashable | None:
        if "user" not in scope and not self._warned_no_user:
            self._warned_no_user = True
            logger.warning(
                "ConnectionLimitMiddleware(max_per_user=%d) sees no scope['user']: place it inside "
                "AuthMiddleware (with Starlette, add it before AuthMiddleware); users are not limited",
                self.counter.max_per_user,
            )
        identity = user_identity(scope)
        return identity if identity is None or isinstance(identity, Hashable) else str(identity)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        counter = self.counter
        ip = client_key(scope, self.ipv6_prefix) if counter.max_per_ip is not None else None
        user = self._user(scope) if counter.max_per_user is not None else None
        over = counter.admit(ip, user)
        if over is not None:
            self.refused[over] += 1
            await self._refuse(scope, send, over, ip, user)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            counter.release(ip, user)

    async def _refuse(self, scope: Scope, send: Send, over: str, ip: Hashable | None, user: Hashable | None) -> None:
        counter = self.counter
        if over == "global":
            status, reason = 503, "server at its connection limit"
            detail = f"{counter.open} open, max_connections {counter.max_connections}"
        elif over == "ip":
            status, reason = 429, "too many connections from this address"
            key = log_safe(str(ip))
            detail = f"{counter.per_ip.get(ip, 0)} open from {key}, max_per_ip {counter.max_per_ip}"
        else:
            status, reason = 429, "too many connections for this user"
            detail = f"{counter.per_user.get(user, 0)} open, max_per_user {counter.max_per_user}"
        await deny(
            scope, send, status, reason, headers=self._headers, refused_by="ConnectionLimitMiddleware", detail=detail
        )


__all__ = ["LIMITS", "ConnectionCounter", "ConnectionLimitMiddleware", "client_key", "default_max_connections"]
