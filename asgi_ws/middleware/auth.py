"""AuthMiddleware: authenticate every WebSocket handshake, and keep enforcing expiry after accept.

Refusals happen before accept: 401 when credentials are missing, malformed, forged or
expired, 403 when valid credentials do not grant access (``authorize``), 503 when a backend
or hook fails or does not answer within ``backend_timeout`` (the client may retry). A
connection whose credentials carry an expiry (a token's ``exp``, a ticket's ``expires_at``)
is closed with close code 4401 when it passes; the app learns it from the
``websocket.disconnect`` it receives, as for any other close.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from .._asyncio import asyncio_required, running_library
from .._scope import child_scope, namespace
from ..auth.backends import AuthBackend, CallableBackend
from ..auth.identity import ANONYMOUS, Identity
from ..close_codes import CloseCode, check_close_code
from ..connection import attach
from ..deny import deny_with
from ..exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    CredentialsExpired,
    HandshakeRejected,
    PermissionDenied,
)
from ..log import redact_server_logs
from ..timers import timer_service
from ..types import ASGIApp, Message, Receive, Scope, Send

Authorize = Callable[[Scope, Identity], "bool | Awaitable[bool]"]
BackendLike = AuthBackend | Callable[[Scope], Any]
T = TypeVar("T")

#: Reason of the 503 refusal when a backend, ``authorize`` or ``load_user`` fails or hangs.
UNAVAILABLE = "authentication backend unavailable"


class _Failed(Exception):
    """A backend or hook raised something other than a refusal; carries only the type's name.

    The exception itself is dropped: its message may quote the credential (a token in a
    database error, a URL with a password), so nothing of it but its type reaches a log.
    """


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


async def _within(awaitable: Awaitable[T], timeout: float) -> T:
    """Await ``awaitable`` in the current task; raise ``asyncio.TimeoutError`` after ``timeout`` s.

    The deadline is one entry in the library's timer heap (at most 50 ms late): about 16,000
    instructions a handshake, where ``asyncio.timeout()`` (a loop handle armed and cancelled
    each time) cost 34,000. Only a handshake that overruns is cancelled. On trio, trio's own deadline.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop: the handshake middlewares run on trio too
        return await _within_trio(awaitable, timeout)
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = timer_service().call_later(timeout, expire)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        # Ours when the deadline passed and nobody else cancelled the task meanwhile.
        if expired and _uncancel(task) == 0:
            raise asyncio.TimeoutError from None
        raise
    finally:
        timer.cancel()
    if expired:  # the deadline passed as the answer came: take the cancellation back
        _uncancel(task)
    return result


async def _within_trio(awaitable: Awaitable[T], timeout: float) -> T:
    if running_library() != "trio":
        getattr(awaitable, "close", lambda: None)()  # never awaited: no warning about it
        raise asyncio_required()
    import trio

    try:
        with trio.fail_after(timeout):
            return await awaitable
    except trio.TooSlowError:
        raise asyncio.TimeoutError from None


def _uncancel(task: asyncio.Task[Any]) -> int:
    return task.uncancel() if sys.version_info >= (3, 11) else 0


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
            after authentication, with ``scope["user"]`` already the identity's user;
            False, or raising ``PermissionDenied``, refuses with 403.
        allow_anonymous: accept handshakes that carry no credentials at all, with
            ``scope["user"]`` an :class:`~asgi_ws.auth.AnonymousUser`. Bad credentials
            are still refused.
        expired_close_code: close code sent when credentials expire on a live connection.
        backend_timeout: seconds the backends and ``authorize`` (``load_user`` included)
            may take together for one handshake; past it the handshake is refused with 503
            ``authentication backend unavailable``, as when one of them raises. None: no
            bound. It bounds waiting, not a backend that blocks the event loop.
        redact_logs: mask the values of the query parameters the backends read credentials
            from (their ``query_params``: SignedTicket's ``ticket``, QueryToken's ``token``)
            in uvicorn's log lines, from construction on (:func:`asgi_ws.log.redact_server_logs`).
            False leaves the server's logging alone.

    Raises:
        ConfigurationError: no backend, a backend of the wrong kind, a close code that
            cannot be sent, a non-positive ``backend_timeout``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: BackendLike | Sequence[BackendLike],
        authorize: Authorize | None = None,
        allow_anonymous: bool = False,
        expired_close_code: int = CloseCode.CREDENTIALS_EXPIRED,
        backend_timeout: float | None = 5.0,
        redact_logs: bool = True,
    ) -> None:
        backends: list[BackendLike] = list(backend) if isinstance(backend, (list, tuple)) else [backend]  # type: ignore[list-item]
        if not backends:
            raise ConfigurationError("AuthMiddleware needs at least one backend")
        if backend_timeout is not None and not backend_timeout > 0:
            raise ConfigurationError("backend_timeout must be a positive number of seconds, or None for no bound")
        self.app = app
        self.backends = [_as_backend(b) for b in backends]
        self.authorize = authorize
        self.allow_anonymous = allow_anonymous
        self.expired_close_code = check_close_code(expired_close_code, "expired_close_code")
        self.backend_timeout = backend_timeout
        challenges = [getattr(b, "www_authenticate", None) for b in self.backends]
        self._challenge = [("www-authenticate", c) for c in challenges if c][:1]
        self._names = [str(getattr(b, "name", type(b).__name__)) for b in self.backends]
        #: Query parameters carrying a credential, masked in uvicorn's logs unless ``redact_logs=False``.
        self.query_params = sorted({str(p) for b in self.backends for p in getattr(b, "query_params", ())})
        if redact_logs and self.query_params:
            redact_server_logs(self.query_params)

    async def authenticate(self, scope: Scope) -> Identity:
        """Run the backends and the ``authorize`` hook; raise ``HandshakeRejected`` to refuse.

        A refusal they raise keeps its status and reason; any other exception from them, or
        no answer within ``backend_timeout``, refuses with 503 ``authentication backend
        unavailable``.
        """
        return await self._authenticate(scope, [""])

    async def _authenticate(self, scope: Scope, step: list[str]) -> Identity:
        # step[0] names the backend or hook running, for the refusal's log line.
        try:
            if self.backend_timeout is None:
                return await self._checks(scope, step)
            return await _within(self._checks(scope, step), self.backend_timeout)
        except _Failed as exc:
            cause = f"{step[0]} raised {exc}"
        except asyncio.TimeoutError:  # only the bound's: _checks turns the others into _Failed
            cause = f"{step[0]} did not answer within {self.backend_timeout:g} s"
        step[0] = ""  # named in the cause
        raise HandshakeRejected(UNAVAILABLE, status=503, detail=cause)

    async def _checks(self, scope: Scope, step: list[str]) -> Identity:
        try:
            identity: Identity | None = None
            for backend, name in zip(self.backends, self._names, strict=True):
                step[0] = f"backend {name!r}"
                identity = await backend.authenticate(scope)
                if identity is not None:
                    break
            step[0] = ""
            if identity is None:
                if not self.allow_anonymous:
                    detail = f"no credentials for: {', '.join(self._names)}"
                    raise AuthenticationFailed("authentication required", headers=self._challenge, detail=detail)
                identity = ANONYMOUS
            if identity.expired():
                raise CredentialsExpired("credentials expired", detail=f"{identity.backend}: expires_at has passed")
            if self.authorize is not None:
                step[0] = "authorize"
                allowed = self.authorize(_inner_scope(scope, identity), identity)
                if inspect.isawaitable(allowed):
                    allowed = await allowed
                step[0] = ""
                if not allowed:
                    raise PermissionDenied("forbidden", detail="authorize returned False")
            return identity
        except HandshakeRejected:
            raise
        except Exception as exc:
            raise _Failed(_type_name(exc)) from None

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
        step = [""]
        try:
            identity = await self._authenticate(scope, step)
        except HandshakeRejected as exc:
            # Which check refused (never the credential): "backend 'ticket': bad signature".
            detail = ": ".join(part for part in (step[0], exc.detail) if part)
            await deny_with(scope, send, exc, refused_by="AuthMiddleware", detail=detail)
            return
        scope = _inner_scope(scope, identity)
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


def _inner_scope(scope: Scope, identity: Identity) -> Scope:
    """The scope the app and ``authorize`` see: a copy with the user, the identity and the
    backend's extra entries (``authorize`` reading ``scope["user"]`` gets the user)."""
    inner = child_scope(scope)
    inner.update(identity.extra_scope)
    inner["user"] = identity.user
    inner["auth"] = identity
    return inner


def _never_select(send: Send, hidden: set[str]) -> Send:
    """Wrap ``send`` so that a credential-carrying subprotocol is never echoed to the client."""

    async def scrubbed_send(message: Message) -> None:
        if message["type"] == "websocket.accept" and message.get("subprotocol") in hidden:
            message = {**message, "subprotocol": None}
        await send(message)

    return scrubbed_send


__all__ = ["AuthMiddleware"]
