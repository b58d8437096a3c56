"""Django identity on the handshake: the session's user, and tickets that name Django users.

:class:`DjangoSessionBackend` is an :class:`~asgi_ws.AuthMiddleware` backend: it reads the
session cookie, loads the user with Django's own ``django.contrib.auth.get_user`` (session
hash and ``SECRET_KEY_FALLBACKS`` checked, as for an HTTP request), and the handshake is
refused before any consumer code runs: 401 without a logged-in session, 403 for an inactive
user. ``scope["user"]`` is then the Django user.

:func:`load_django_user` makes a :class:`~asgi_ws.auth.SignedTicket` produce Django users
(``SignedTicket(keys, load_user=load_django_user)``), and :func:`issue_ticket` signs one for a
Django user, from a view (:func:`asgi_ws.contrib.channels.views.ticket_view` is such a view).

Database access runs in ``channels.db.database_sync_to_async``, like Channels' own
``AuthMiddleware``. Django settings are read on each handshake, so ``override_settings``
works in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async  # type: ignore[import-untyped]

from ..._scope import cookie
from ...auth.identity import Identity
from ...auth.tickets import SignedTicket
from ...exceptions import PermissionDenied
from ...types import Scope

INACTIVE = "inactive user"


class DjangoSessionBackend:
    """Authenticate a handshake with the Django session its cookie names.

    Outcomes, decided before the application (your consumer) is called:

    - no session cookie, or a session without a user (anonymous, expired, flushed, its
      password changed since): no credentials of this kind. AuthMiddleware refuses with
      401 ``authentication required``, or lets the next backend (a ticket) decide.
    - the user is inactive (``is_active`` False): 403 ``inactive user``.
    - otherwise ``scope["user"]`` is the user model instance, ``scope["auth"].backend`` is
      ``"django session"``.

    ``scope["session"]`` is the session, as Channels' ``SessionMiddleware`` gives it (a
    ``LazyObject`` around the ``SESSION_ENGINE``'s store; save it yourself after changing it,
    as in any Channels consumer). With a Channels ``SessionMiddlewareStack`` (or
    ``AuthMiddlewareStack``) outside AuthMiddleware, the backend uses the session it made;
    inside, Channels' ``SessionMiddleware`` swaps in a fresh lazy store and Channels'
    ``AuthMiddleware`` keeps the user found here (it fills ``scope["user"]`` only when absent).

    Args:
        cookie_name: the session cookie; default ``settings.SESSION_COOKIE_NAME``.
        allow_anonymous: accept handshakes without a logged-in session, with
            ``scope["user"]`` Django's ``AnonymousUser`` (AuthMiddleware's own
            ``allow_anonymous`` would give asgi_ws's). A later backend then never runs.
    """

    name = "django session"

    def __init__(self, *, cookie_name: str | None = None, allow_anonymous: bool = False) -> None:
        self.cookie_name = cookie_name
        self.allow_anonymous = allow_anonymous

    async def authenticate(self, scope: Scope) -> Identity | None:
        session = scope.get("session")  # a Channels SessionMiddleware outside made it
        extra: dict[str, Any] = {}
        if session is None:
            key = cookie(scope, self.cookie_name or _settings().SESSION_COOKIE_NAME) or None
            session = extra["session"] = _lazy_session(key)
            if key is None:
                return self._without_user(extra)
        user = await database_sync_to_async(_session_user)(session)
        if user is None:
            return self._without_user(extra)
        return Identity(user=user, backend=self.name, extra_scope=extra)

    def _without_user(self, extra: dict[str, Any]) -> Identity | None:
        if not self.allow_anonymous:
            return None
        from django.contrib.auth.models import AnonymousUser  # type: ignore[import-untyped]

        return Identity(user=AnonymousUser(), backend=self.name, extra_scope=extra)


def _lazy_session(key: str | None) -> Any:
    """The session as Channels' SessionMiddleware puts it in the scope: a ``LazyObject``
    around the engine's ``SessionStore``, which reads its data on first use."""
    from django.utils.functional import LazyObject  # type: ignore[import-untyped]

    session = LazyObject()
    session._wrapped = import_module(_settings().SESSION_ENGINE).SessionStore(key)
    return session


def _session_user(session: Any) -> Any:
    """The session's active user, or None; raises PermissionDenied for an inactive one."""
    from django.contrib.auth import SESSION_KEY, get_user  # type: ignore[import-untyped]

    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return None
    # Django's own checks (backend still configured, session hash, SECRET_KEY_FALLBACKS), as
    # for an HTTP request: get_user reads nothing of the request but its session.
    user = get_user(SimpleNamespace(session=session))
    if user.is_authenticated:
        return _active(user)  # a backend may let inactive users in (AllowAllUsersModelBackend)
    # ModelBackend hides inactive users (get_user gives AnonymousUser): say 403, not 401.
    found = _user_by_pk(user_id)
    if found is not None:
        _active(found)
    return None


def _user_by_pk(user_id: Any) -> Any:
    """The user whose primary key is ``user_id`` (a string from a session or a ticket), or None."""
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError  # type: ignore[import-untyped]

    model = get_user_model()
    try:
        pk = model._meta.pk.to_python(user_id)
    except ValidationError:
        return None
    return model._default_manager.filter(pk=pk).first()


def _active(user: Any) -> Any:
    if getattr(user, "is_active", True) is False:
        raise PermissionDenied(INACTIVE)
    return user


def _settings() -> Any:
    from django.conf import settings  # type: ignore[import-untyped]

    return settings


async def load_django_user(user_id: str) -> Any:
    """``SignedTicket(load_user=load_django_user)``: the ticket's user as a Django user.

    Returns the user model instance whose primary key is ``user_id``, or None (401
    ``unknown user``) when there is none; raises ``PermissionDenied`` (403 ``inactive
    user``) when it is inactive.
    """
    return await database_sync_to_async(_load_user)(user_id)


def _load_user(user_id: str) -> Any:
    user = _user_by_pk(user_id)
    return _active(user) if user is not None else None


def issue_ticket(
    tickets: SignedTicket,
    user: Any,
    *,
    scopes: Iterable[str] = (),
    expires_at: float | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a ticket naming the Django ``user`` (by primary key), for ``load_django_user``.

    Raises:
        ValueError: ``user`` is not authenticated (Django's ``AnonymousUser``).
    """
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise ValueError("a ticket is issued for an authenticated user only")
    return tickets.issue(str(user.pk), scopes=scopes, expires_at=expires_at, claims=claims)


__all__ = ["DjangoSessionBackend", "issue_ticket", "load_django_user"]
