"""AuthMiddleware: authenticate every WebSocket handshake, and keep enforcing expiry after accept.

Refusals happen before accept: 401 when credentials are missing, malformed, forged or
expired, 403 when valid credentials do not grant access (``authorize``). A connection whose
credentials carry an expiry (a token's ``exp``, a ticket's ``expires_at``) is closed with
close code 4401 when it passes; the app learns it from the ``websocket.disconnect`` it
receives, as for any other close.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from .._scope import child_scope, namespace
from ..auth.backends import AuthBackend, CallableBackend
from ..auth.identity import ANONYMOUS, Identity
from ..close_codes import CloseCode
from ..connection import attach
from ..deny import deny_with
from ..exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    CredentialsExpired,
    HandshakeRejected,
    PermissionDenied,
)
from ..types import ASGIApp, Message, Receive, Scope, Send

Authorize = Callable[[Scope, Identity], "bool | Awaitable[bool]"]
BackendLike = AuthBackend | Callable[[Scope], Any]


def _as_backend(backend: BackendLike) -> AuthBackend:
    if isinstance(backend, AuthBackend):
        return backend
    if callable(backend):
        return CallableBackend(backend)
    raise ConfigurationError(
        f"backend {backend!r} is neither an auth backend (with an async authenticate(scope)) nor a callable"
    )


class AuthMiddleware:
    """Authenticate WebSocket handshakes and put the identity in the scope.

    On success ``scope["user"]`` is the user and ``scope["auth"]`` the
    :class:`~asgi_ws.auth.Identity` (with ``scopes`` for Starlette's ``@requires``); the
    identity is also at ``scope["asgi_ws"]["identity"]``.

    Args:
        app: the ASGI application to wrap.
        backend: one backend or a list tried in order; the first that finds credentials
            decides. A plain callable ``authenticate(scope)`` is accepted as a backend.
        authorize: optional ``authorize(scope, identity) -> bool`` (sync or async) run
            after authentication; False, or raising ``PermissionDenied``, refuses with 403.
        allow_anonymous: accept handshakes that carry no credentials at all, with
            ``scope["user"]`` an :class:`~asgi_ws.auth.AnonymousUser`. Bad credentials
            are still refused.
        expired_close_code: close code sent when credentials expire on a live connection.

    Raises:
        ConfigurationError: no backend, or a backend of the wrong kind.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: BackendLike | Sequence[BackendLike],
        authorize: Authorize | None = None,
        allow_anonymous: bool = False,
        expired_close_code: int = CloseCode.CREDENTIALS_EXPIRED,
    ) -> None:
        backends: list[BackendLike] = list(backend) if isinstance(backend, (list, tuple)) else [backend]  # type: ignore[list-item]
        if not backends:
            raise ConfigurationError("AuthMiddleware needs at least one backend")
        self.app = app
        self.backends = [_as_backend(b) for b in backends]
        self.authorize = authorize
        self.allow_anonymous = allow_anonymous
        self.expired_close_code = int(expired_close_code)
        challenges = [getattr(b, "www_authenticate", None) for b in self.backends]
        self._challenge = [("www-authenticate", c) for c in challenges if c][:1]

    async def authenticate(self, scope: Scope) -> Identity:
        """Run the backends and the ``authorize`` hook; raise ``HandshakeRejected`` to refuse."""
        identity: Identity | None = None
        for backend in self.backends:
            identity = await backend.authenticate(scope)
            if identity is not None:
                break
        if identity is None:
            if not self.allow_anonymous:
                raise AuthenticationFailed("authentication required", headers=self._challenge)
            identity = ANONYMOUS
        if identity.expired():
            raise CredentialsExpired("credentials expired")
        if self.authorize is not None:
            allowed = self.authorize(scope, identity)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise PermissionDenied("forbidden")
        return identity

    def _hidden_subprotocols(self, scope: Scope) -> set[str]:
        hidden: set[str] = set()
        for backend in self.backends:
            finder: Callable[[Scope], Collection[str]] | None = getattr(backend, "hidden_subprotocols", None)
            if finder is not None:
                hidden.update(finder(scope))
        return hidden

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            identity = await self.authenticate(scope)
        except HandshakeRejected as exc:
            await deny_with(scope, send, exc, refused_by="AuthMiddleware")
            return
        scope = child_scope(scope)
        scope["user"] = identity.user
        scope["auth"] = identity
        namespace(scope)["identity"] = identity
        hidden = self._hidden_subprotocols(scope)
        if hidden:
            scope["subprotocols"] = [p for p in scope.get("subprotocols") or () if p not in hidden]
            send = _never_select(send, hidden)
        expires_at = identity.expires_at
        if expires_at is None:
            await self.app(scope, receive, send)
            return
        conn, receive, send = attach(scope, receive, send)
        code = self.expired_close_code
        conn.on_accept(lambda: conn.call_at_wall_time(expires_at, lambda: conn.close(code, "credentials expired")))
        await conn.run(self.app, scope, receive, send)


def _never_select(send: Send, hidden: set[str]) -> Send:
    """Wrap ``send`` so that a credential-carrying subprotocol is never echoed to the client."""

    async def scrubbed_send(message: Message) -> None:
        if message["type"] == "websocket.accept" and message.get("subprotocol") in hidden:
            message = {**message, "subprotocol": None}
        await send(message)

    return scrubbed_send


__all__ = ["AuthMiddleware"]
