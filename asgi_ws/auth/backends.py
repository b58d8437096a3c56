"""Where a handshake carries its credentials, and how they are checked.

A backend is anything with ``async authenticate(scope) -> Identity | None``:

- it returns None when the request carries no credentials of its kind, so the next
  backend may try;
- it raises :class:`~asgi_ws.exceptions.AuthenticationFailed` (401) when credentials of
  its kind are present but malformed, forged, unknown or expired;
- it returns an :class:`~asgi_ws.auth.Identity` when they are good.

The token backends here only *find* a token; ``verify`` decides what it is worth. It is a
callable ``verify(token) -> Identity | user | str | None`` (sync or async): a user id
string, a user object or a full Identity (with ``expires_at`` for tokens that expire, such
as a JWT's ``exp``); None or ``AuthenticationFailed`` refuses. ``SignedTicket.verify`` is
such a callable, so a signed token can travel in any of these places.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol, runtime_checkable

from .._scope import CREDENTIAL_SUBPROTOCOL_PREFIXES, cookie, header_values, query_param
from ..exceptions import AuthenticationFailed, ConfigurationError
from ..types import Scope
from .identity import Identity, as_identity

Verify = Callable[[str], Any]


@runtime_checkable
class AuthBackend(Protocol):
    """What AuthMiddleware needs of a backend."""

    async def authenticate(self, scope: Scope) -> Identity | None: ...


class _TokenBackend:
    """Shared part of the backends that find a token somewhere and hand it to ``verify``."""

    name = "token"
    www_authenticate: str | None = None

    def __init__(self, verify: Verify) -> None:
        if not callable(verify):
            raise ConfigurationError(f"{type(self).__name__}: verify must be a callable taking the token")
        self.verify = verify

    def find_token(self, scope: Scope) -> str | None:
        raise NotImplementedError

    def hidden_subprotocols(self, scope: Scope) -> Collection[str]:
        """Offered subprotocol entries that carry credentials and must never reach the app."""
        return ()

    def _failure(self, reason: str, detail: str = "") -> AuthenticationFailed:
        headers = [("www-authenticate", self.www_authenticate)] if self.www_authenticate else []
        return AuthenticationFailed(reason, headers=headers, detail=detail)

    async def authenticate(self, scope: Scope) -> Identity | None:
        token = self.find_token(scope)
        if token is None:
            return None
        if not token:
            raise self._failure(f"empty {self.name}")
        try:
            result = self.verify(token)
            if inspect.isawaitable(result):
                result = await result
        except AuthenticationFailed as exc:
            if self.www_authenticate and not exc.headers:
                exc.headers = (("www-authenticate", self.www_authenticate),)
            raise
        identity = as_identity(result, self.name)
        if identity is None:
            raise self._failure(f"invalid {self.name}", detail="verify returned None")
        if not identity.backend:
            identity = dataclasses.replace(identity, backend=self.name)
        return identity


class BearerToken(_TokenBackend):
    """A token in the ``Authorization: Bearer <token>`` header (non-browser clients).

    Browsers cannot set headers on a WebSocket; use :class:`SubprotocolToken`,
    :class:`CookieToken` or a :class:`~asgi_ws.auth.SignedTicket` for them.

    Args:
        verify: see the module docstring.
        scheme: the authorization scheme expected, compared case-insensitively.
    """

    name = "bearer token"

    def __init__(self, verify: Verify, *, scheme: str = "Bearer") -> None:
        super().__init__(verify)
        self.scheme = scheme.lower()
        self.www_authenticate = scheme

    def find_token(self, scope: Scope) -> str | None:
        values = header_values(scope, b"authorization")
        if len(values) > 1:
            raise self._failure("more than one Authorization header")
        if not values:
            return None
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != self.scheme:
            return None  # another scheme (Basic...) is for another backend
        return token.strip()


class QueryToken(_TokenBackend):
    """A token in a query parameter, ``wss://host/ws?token=...``.

    Query strings are written to access logs by servers and proxies (uvicorn logs the
    WebSocket request line with it): AuthMiddleware masks ``param`` in uvicorn's log lines
    (``query_params``), not in your proxy's. Prefer a short-lived
    :class:`~asgi_ws.auth.SignedTicket` (``docs/logging.md``).
    """

    name = "query token"

    def __init__(self, verify: Verify, *, param: str = "token") -> None:
        super().__init__(verify)
        self.param = param

    @property
    def query_params(self) -> tuple[str, ...]:
        """The query parameters this backend reads a credential from (masked in server logs)."""
        return (self.param,)

    def find_token(self, scope: Scope) -> str | None:
        return query_param(scope, self.param)


class CookieToken(_TokenBackend):
    """A token (or session id) in a cookie, sent by browsers to same-site endpoints.

    Cookies make Cross-Site WebSocket Hijacking possible: pair this backend with
    :class:`~asgi_ws.OriginMiddleware`.
    """

    name = "cookie"

    def __init__(self, verify: Verify, *, cookie: str = "session") -> None:
        super().__init__(verify)
        self.cookie = cookie

    def find_token(self, scope: Scope) -> str | None:
        return cookie(scope, self.cookie)


class SubprotocolToken(_TokenBackend):
    """A token carried as one entry of ``Sec-WebSocket-Protocol``, the browser-friendly header.

    The browser offers ``new WebSocket(url, ["chat.v2", "bearer." + token])``. The entry
    starting with ``prefix`` is removed from ``scope["subprotocols"]`` before the app or
    SubprotocolMiddleware see it, and is never echoed back as the selected subprotocol.
    The client must also offer a real subprotocol: a browser fails the handshake when it
    offered subprotocols and the server selects none.

    Args:
        verify: see the module docstring.
        prefix: marks the entry holding the token. The token must consist of RFC 7230
            token characters (base64url, JWTs and SignedTicket tokens do).
    """

    name = "subprotocol token"

    def __init__(self, verify: Verify, *, prefix: str = "bearer.") -> None:
        super().__init__(verify)
        if not prefix:
            raise ConfigurationError("SubprotocolToken: prefix must be a non-empty string such as 'bearer.'")
        self.prefix = prefix
        CREDENTIAL_SUBPROTOCOL_PREFIXES.add(prefix)

    def hidden_subprotocols(self, scope: Scope) -> list[str]:
        return [p for p in scope.get("subprotocols") or () if p.startswith(self.prefix)]

    def find_token(self, scope: Scope) -> str | None:
        entries = self.hidden_subprotocols(scope)
        if len(entries) > 1:
            raise self._failure("more than one token subprotocol offered")
        return entries[0][len(self.prefix) :] if entries else None


class CallableBackend:
    """Adapts any callable ``authenticate(scope)`` (sync or async) to the backend interface."""

    def __init__(self, func: Callable[[Scope], Identity | Any | Awaitable[Identity | Any | None] | None]) -> None:
        self.func = func
        self.name = getattr(func, "__name__", "callable")

    async def authenticate(self, scope: Scope) -> Identity | None:
        result = self.func(scope)
        if inspect.isawaitable(result):
            result = await result
        return as_identity(result, self.name)


__all__ = [
    "AuthBackend",
    "BearerToken",
    "CallableBackend",
    "CookieToken",
    "QueryToken",
    "SubprotocolToken",
]
