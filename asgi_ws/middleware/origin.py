"""OriginMiddleware: refuse cross-site WebSocket handshakes (CSWSH) before the app sees them.

Browsers apply no CORS checks to WebSockets: any page may open a socket to your server and
the browser attaches your users' cookies. The ``Origin`` header, which browsers always send
and pages cannot forge, is the server's only defence. The decision lives in the pure
:class:`OriginPolicy`; the middleware only reads the header and refuses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._scope import header, header_values, log_safe, namespace
from ..deny import deny
from ..exceptions import ConfigurationError
from ..types import ASGIApp, Receive, Scope, Send

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_IPV6_RE = re.compile(r"^\[[0-9a-f:.]+\]$")
#: Longer values are decided without the cache: a real origin is at most ``https://`` + a
#: 253-character host + a port, and a client sending many huge distinct values must not be
#: able to pin them in memory.
_CACHED_LENGTH = 300


@dataclass(frozen=True, slots=True)
class Origin:
    """A serialised origin split into its three significant parts.

    ``host`` is lower-case (IPv6 addresses keep their brackets) and ``port`` is always
    explicit, so ``https://X.com`` and ``https://x.com:443`` compare equal.
    """

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        if DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(value: str) -> Origin | None:
    """Parse an ``Origin`` header value; return None for anything that is not ``scheme://host[:port]``.

    A path, query, fragment, user-info, unknown scheme or malformed host makes the value
    malformed: browsers never send those, so a request carrying them is refused.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment or "#" in value:
        return None
    netloc = parts.netloc
    if not netloc or "@" in netloc or netloc.endswith(":"):
        return None
    host = (netloc[: netloc.rindex(":")] if port is not None else netloc).lower()
    if not (_HOST_RE.match(host) or _IPV6_RE.match(host)):
        return None
    return Origin(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])


@dataclass(frozen=True, slots=True)
class _Wildcard:
    scheme: str
    suffix: str  # ".example.com": a host must end with it and have at least one more label
    port: int

    def matches(self, origin: Origin) -> bool:
        return (
            origin.scheme == self.scheme
            and origin.port == self.port
            and origin.host.endswith(self.suffix)
            and len(origin.host) > len(self.suffix)
        )


class OriginPolicy:
    """The allow-list decision, free of ASGI so it can be tested exhaustively.

    Args:
        allow_origins: exact origins (``"https://app.example.com"``), wildcard subdomains
            (``"https://*.example.com"``, any depth, never the bare domain) or ``"*"``
            (any origin: disables the check for browsers, only for public endpoints).
        allow_origin_regex: a pattern matched with ``fullmatch`` against the normalised
            origin (lower-case host, default port omitted).
        allow_missing: accept requests without an ``Origin`` header (non-browser clients).
        allow_null: accept the literal origin ``null`` (sandboxed iframes, ``file:`` pages).
        allow_same_origin: accept an origin whose host and port equal the ``Host`` header.

    Raises:
        ConfigurationError: an entry of ``allow_origins`` is not ``scheme://host[:port]``.
    """

    def __init__(
        self,
        allow_origins: Iterable[str] = (),
        *,
        allow_origin_regex: str | re.Pattern[str] | None = None,
        allow_missing: bool = False,
        allow_null: bool = False,
        allow_same_origin: bool = False,
    ) -> None:
        if isinstance(allow_origins, str):
            raise ConfigurationError("allow_origins must be a list of origins, not a single string")
        exact: set[Origin] = set()
        wildcards: list[_Wildcard] = []
        self.allow_any = False
        for entry in allow_origins:
            if entry == "*":
                self.allow_any = True
            elif "*" in entry:
                wildcards.append(_parse_wildcard(entry))
            else:
                origin = parse_origin(entry)
                if origin is None or entry.strip() == "null":
                    raise ConfigurationError(
                        f"allow_origins entry {entry!r} is not an origin like 'https://example.com' "
                        "(scheme, host and optional port, no path); use allow_null=True for 'null'"
                    )
                exact.add(origin)
        self.exact = frozenset(exact)
        self.wildcards = tuple(wildcards)
        try:
            self.regex = re.compile(allow_origin_regex) if isinstance(allow_origin_regex, str) else allow_origin_regex
        except re.error as exc:
            raise ConfigurationError(f"allow_origin_regex is not a valid regular expression: {exc}") from exc
        self.allow_missing = allow_missing
        self.allow_null = allow_null
        self.allow_same_origin = allow_same_origin
        # A site sees few distinct origins: remember the decision for each (bounded, so a
        # client sending random origins only churns the cache).
        self._decide_one = functools.lru_cache(maxsize=1024)(self._decide_uncached)
        if not (self.allow_any or exact or wildcards or self.regex or allow_same_origin):
            raise ConfigurationError(
                "OriginMiddleware allows no origin: pass allow_origins=[...], allow_origin_regex=..., "
                "allow_same_origin=True, or allow_origins=['*'] for a public endpoint"
            )

    def check(self, values: list[str], host: str | None = None) -> str | None:
        """Decide on the ``Origin`` header values of a request.

        Args:
            values: every ``Origin`` header value sent (normally zero or one).
            host: the ``Host`` header, used by ``allow_same_origin``.

        Returns:
            None when the origin is allowed, else the refusal reason.
        """
        return self.decide(values, host)[0]

    def decide(self, values: list[str], host: str | None = None) -> tuple[str | None, Origin | None]:
        """Like :meth:`check`, also returning the parsed origin (None when absent, ``null`` or malformed)."""
        if not values:
            return (None if self.allow_missing else "missing Origin header"), None
        if len(values) > 1:
            return "more than one Origin header", None
        value, host = values[0], host if self.allow_same_origin else None
        if len(value) > _CACHED_LENGTH or (host is not None and len(host) > _CACHED_LENGTH):
            return self._decide_uncached(value, host)
        return self._decide_one(value, host)

    def _decide_uncached(self, value: str, host: str | None) -> tuple[str | None, Origin | None]:
        value = value.strip()
        if value == "null":
            return (None if self.allow_null else "origin 'null' not allowed"), None
        origin = parse_origin(value)
        if self.allow_any:
            return None, origin
        if origin is None:
            return "malformed Origin header", None
        if origin in self.exact or any(w.matches(origin) for w in self.wildcards):
            return None, origin
        if self.regex is not None and self.regex.fullmatch(str(origin)):
            return None, origin
        if host is not None and _same_host(origin, host):
            return None, origin
        return "origin not allowed", origin


def _parse_wildcard(entry: str) -> _Wildcard:
    scheme, sep, rest = entry.partition("://")
    if not sep or not rest.startswith("*.") or "*" in rest[1:]:
        raise ConfigurationError(
            f"allow_origins entry {entry!r}: a wildcard must be a whole leftmost label, like 'https://*.example.com'"
        )
    origin = parse_origin(f"{scheme}://{rest[2:]}")
    if origin is None:
        raise ConfigurationError(f"allow_origins entry {entry!r} is not 'scheme://*.domain[:port]'")
    return _Wildcard(origin.scheme, "." + origin.host, origin.port)


def _same_host(origin: Origin, host_header: str) -> bool:
    target = parse_origin(f"{origin.scheme}://{host_header.strip()}")
    return target is not None and target == origin


def _describe(values: list[str]) -> str:
    """The refused ``Origin`` value(s) for the log line: not a secret, but escaped and cut."""
    if not values:
        return ""
    shown = ", ".join(log_safe(value) for value in values[:3])
    return f"Origin {shown}" + (f" and {len(values) - 3} more" if len(values) > 3 else "")


class OriginMiddleware:
    """Refuse WebSocket handshakes whose ``Origin`` is not allowed, with HTTP 403.

    Non-WebSocket scopes pass through untouched. The normalised origin of an accepted
    connection is put in ``scope["asgi_ws"]["origin"]`` (None when absent or ``null``).
    The options are those of :class:`OriginPolicy`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Iterable[str] = (),
        allow_origin_regex: str | re.Pattern[str] | None = None,
        allow_missing: bool = False,
        allow_null: bool = False,
        allow_same_origin: bool = False,
    ) -> None:
        self.app = app
        self.policy = OriginPolicy(
            allow_origins,
            allow_origin_regex=allow_origin_regex,
            allow_missing=allow_missing,
            allow_null=allow_null,
            allow_same_origin=allow_same_origin,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        values = header_values(scope, b"origin")
        host = header(scope, b"host") if self.policy.allow_same_origin else None
        reason, origin = self.policy.decide(values, host)
        if reason is not None:
            await deny(scope, send, 403, reason, refused_by="OriginMiddleware", detail=_describe(values))
            return
        ns = namespace(scope)
        ns["origin"] = str(origin) if origin else None
        await self.app(scope, receive, send)


__all__ = ["Origin", "OriginMiddleware", "OriginPolicy", "parse_origin"]
