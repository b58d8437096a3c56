"""Pure helpers over an ASGI scope: header lookup, log-safe descriptions, the library namespace.

Nothing here performs I/O, so every handshake decision built on these helpers can be tested
with a plain dict.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from .types import Scope

NAMESPACE = "asgi_ws"


def user_identity(scope: Scope) -> Any:
    """The ``identity`` of an authenticated ``scope["user"]`` (AuthMiddleware's user), else None.

    A user without one (a Django user) is identified by its primary key, as a string: the id
    a ticket issued for it carries, so both ways of authenticating name the same user.
    """
    user = scope.get("user")
    if not getattr(user, "is_authenticated", False):
        return None
    identity = getattr(user, "identity", None)
    if identity is None:
        pk = getattr(user, "pk", None)
        identity = str(pk) if pk is not None else None
    return identity


def header_values(scope: Scope, name: bytes) -> list[str]:
    """Return every value of header ``name`` (lower-case bytes) in arrival order, latin-1 decoded."""
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


def header(scope: Scope, name: bytes) -> str | None:
    """Return the single value of header ``name``, or None when it is absent.

    A header sent more than once yields None too: for security-relevant headers (Origin,
    Authorization) an ambiguous request is treated like a missing one by the caller's policy.
    """
    values = header_values(scope, name)
    return values[0] if len(values) == 1 else None


def query_name(key: str) -> str:
    """Return the parameter name a raw query-string ``key`` stands for (``%xx`` and ``+`` decoded).

    :func:`query_param` and the log filter (:class:`asgi_ws.log.RedactQueryParams`) both name
    parameters with this function, so a parameter that authenticates is one the filter masks,
    however its name is spelt: ``%74oken``, ``t%6Fken`` and ``t%6fken`` all name ``token``.
    """
    return unquote_plus(key) if "%" in key or "+" in key else key


def query_param(scope: Scope, name: str) -> str | None:
    """Return the first value of query parameter ``name``, or None."""
    raw = scope.get("query_string", b"")
    if not raw:
        return None
    # Same result as urllib's parse_qsl for one name, without decoding every other pair.
    for pair in raw.decode("latin-1").split("&"):
        key, _, value = pair.partition("=")
        if key == name or query_name(key) == name:
            return unquote_plus(value) if "%" in value or "+" in value else value
    return None


def cookie(scope: Scope, name: str) -> str | None:
    """Return the value of cookie ``name`` from the ``Cookie`` header(s), or None."""
    for value in header_values(scope, b"cookie"):
        for part in value.split(";"):
            key, sep, val = part.strip().partition("=")
            if sep and key == name:
                return val.strip().strip('"')
    return None


def client_address(scope: Scope) -> str:
    """Return ``host:port`` of the peer for log lines, or ``-`` when the server gave none.

    Behind a proxy this is the address the server took from ``X-Forwarded-For`` (uvicorn's
    ``--proxy-headers``), so a host that is not plain printable text is escaped.
    """
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    if not (isinstance(host, str) and host.isprintable()):
        host = log_safe(str(host))
    return f"{host}:{port}"


def log_safe(value: str, limit: int = 100) -> str:
    """Return ``value`` quoted for a log line: every control or non-printable character escaped,
    cut to ``limit`` characters.

    For values a client chose (an Origin, offered subprotocols): escaped, a hostile header
    cannot end the log line and forge the next one, nor hide text with terminal escapes.
    """
    if len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)


#: Prefixes of ``Sec-WebSocket-Protocol`` entries that carry a credential (each
#: ``SubprotocolToken`` adds its own): a log line shows such an entry as ``prefix[redacted]``,
#: even from a SubprotocolMiddleware placed, wrongly, outside AuthMiddleware.
CREDENTIAL_SUBPROTOCOL_PREFIXES: set[str] = set()


def log_path(scope: Scope) -> str:
    """Return the request path for log lines, deliberately without the query string.

    Query strings carry tickets and tokens; asgi_ws never writes them to a log.
    """
    return str(scope.get("root_path", "") + scope.get("path", "")) or "/"


def namespace(scope: Scope) -> dict[str, Any]:
    """Return the library's namespaced dict in the scope, adding it in place on first use.

    Middlewares share per-connection data through ``scope["asgi_ws"]`` so their keys never
    collide with other middleware. This one key is the only change asgi_ws makes to a scope
    it is given (Starlette's router updates scopes in place too); copying the whole scope
    instead would cost about 0.5 KB per open connection. Changes to other keys (``user``,
    ``subprotocols``) are made on a copy, see :func:`child_scope`.
    """
    ns = scope.get(NAMESPACE)
    if ns is None:
        ns = scope[NAMESPACE] = {}
    return ns


def child_scope(scope: Scope) -> dict[str, Any]:
    """Return a shallow copy of ``scope`` to pass inward, sharing the library namespace.

    Copying keeps a middleware's changes (``user``, ``subprotocols``) out of the caller's
    scope, as Channels does; the namespace dict is shared on purpose so that every
    asgi_ws layer of one connection sees the same per-connection state.
    """
    namespace(scope)
    return dict(scope)
