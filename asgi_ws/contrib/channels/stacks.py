"""One-line handshake stacks for Channels routing, in the spirit of ``AuthMiddlewareStack``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...auth.tickets import SignedTicket
from ...middleware.auth import AuthMiddleware, Authorize, BackendLike
from ...middleware.origin import OriginMiddleware
from ...types import ASGIApp
from .auth import DjangoSessionBackend


def DjangoAuthStack(
    inner: ASGIApp,
    *,
    allow_origins: Iterable[str] = (),
    tickets: SignedTicket | None = None,
    authorize: Authorize | None = None,
    allow_anonymous: bool = False,
    **auth_options: Any,
) -> OriginMiddleware:
    """``AllowedHostsOriginValidator(AuthMiddlewareStack(inner))``, refusing with real statuses.

    Named like the Channels stack it replaces. ``OriginMiddleware`` (same origin as the
    ``Host``, plus ``allow_origins``) around ``AuthMiddleware`` with ``tickets`` when given
    (``SignedTicket(keys, load_user=load_django_user)``; a ``?ticket=`` decides when present),
    then a :class:`DjangoSessionBackend`. The consumer gets the Django user
    in ``scope["user"]`` and the session in ``scope["session"]``; a handshake without a
    logged-in session (or a valid ticket) is refused with 401, an inactive user with 403, a
    cross-site page with 403, before the consumer runs. ``auth_options`` go to
    AuthMiddleware (``backend_timeout``, ``expired_close_code``).
    """
    backends: list[BackendLike] = [] if tickets is None else [tickets]
    backends.append(DjangoSessionBackend(allow_anonymous=allow_anonymous))
    return OriginMiddleware(
        AuthMiddleware(inner, backend=backends, authorize=authorize, **auth_options),
        allow_origins=list(allow_origins),
        allow_same_origin=True,
    )


__all__ = ["DjangoAuthStack"]
