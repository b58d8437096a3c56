"""Who a connection belongs to: the result of authenticating a handshake.

``scope["user"]`` receives :attr:`Identity.user` and ``scope["auth"]`` the
:class:`Identity` itself, which has the ``scopes`` attribute Starlette's ``@requires``
decorator reads, so Starlette, FastAPI and Channels code keeps working unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class User:
    """A minimal authenticated user: an identifier and a display name.

    It has the attributes of Starlette's ``BaseUser`` (``is_authenticated``,
    ``display_name``, ``identity``) and of Django's user (``is_authenticated``,
    ``is_anonymous``, ``pk``), enough for templates and permission checks.
    """

    is_authenticated = True
    is_anonymous = False

    def __init__(self, identity: str, display_name: str | None = None) -> None:
        self.identity = identity
        self.display_name = display_name if display_name is not None else identity

    @property
    def pk(self) -> str:
        return self.identity

    def __eq__(self, other: object) -> bool:
        return isinstance(other, User) and other.identity == self.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        return f"User({self.identity!r})"


class AnonymousUser:
    """The user of a connection that presented no credentials, where anonymity is allowed."""

    is_authenticated = False
    is_anonymous = True
    identity = ""
    display_name = ""
    pk = None

    def __repr__(self) -> str:
        return "AnonymousUser()"


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated party of a connection.

    Attributes:
        user: the user object the application sees as ``scope["user"]``.
        scopes: permissions granted (Starlette's ``AuthCredentials.scopes``).
        expires_at: wall-clock expiry (``time.time()`` seconds) of the credentials; the
            connection is closed with 4401 when it passes. None: never.
        claims: anything else the backend learned (token claims, ticket payload).
        backend: name of the backend that authenticated the connection.
        extra_scope: entries the backend adds to the application's scope beside ``user``
            and ``auth`` (``DjangoSessionBackend``: Django's ``session``); ``authorize``
            sees them too.
    """

    user: Any
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    backend: str = ""
    extra_scope: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_authenticated(self) -> bool:
        return bool(getattr(self.user, "is_authenticated", True))

    def expired(self, now: float | None = None) -> bool:
        """Return True once ``expires_at`` has passed."""
        return self.expires_at is not None and self.expires_at <= (time.time() if now is None else now)


ANONYMOUS = Identity(user=AnonymousUser(), backend="anonymous")


def as_identity(result: Any, backend: str) -> Identity | None:
    """Turn what a ``verify`` callable returned into an :class:`Identity`.

    ``None`` stays None (the credentials were refused); an :class:`Identity` is kept; a
    string becomes a :class:`User` of that id; any other object is taken as the user.
    """
    if result is None or isinstance(result, Identity):
        return result
    if isinstance(result, str):
        result = User(result)
    return Identity(user=result, backend=backend)


__all__ = ["ANONYMOUS", "AnonymousUser", "Identity", "User", "as_identity"]
