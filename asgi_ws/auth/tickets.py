"""Short-lived signed tickets: how a browser authenticates a WebSocket without leaking a real token.

The flow: the page calls an ordinary HTTP endpoint of yours, authenticated the way the rest
of your app is (session cookie, OAuth...), which returns ``tickets.issue(user_id)``; the page
then opens ``wss://host/ws?ticket=<ticket>`` within ``max_age`` seconds. The ticket is
signed with itsdangerous, so the WebSocket server needs no shared session store, and it is
useless after ``max_age``, so its appearance in an access log is harmless.

Key rotation follows itsdangerous's convention: ``secret_keys`` lists keys oldest to newest;
tickets are signed with the newest and accepted with any key still listed. Drop a key from
the list to retire it; tickets signed with it are then refused.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from itsdangerous import BadPayload, BadSignature, SignatureExpired, Signer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import want_bytes

from .._scope import query_param
from ..exceptions import AuthenticationFailed, ConfigurationError, CredentialsExpired
from ..types import Scope
from .identity import Identity, User

LoadUser = Callable[[str], Any]
MIN_KEY_BYTES = 16


class _KeyCachingSigner(TimestampSigner):
    """A TimestampSigner deriving each signing key once instead of on every sign and verify.

    itsdangerous derives the key from (salt, secret) on each call; the derivation is
    deterministic, so caching it per secret changes nothing but the cost (about a third
    of a ticket verification).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        raw = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        key = self._derived.get(raw)
        if key is None:
            key = self._derived[raw] = super().derive_key(raw)
        return key


class _TicketSerializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer that reuses one signer per salt (signers hold no per-call state)."""

    default_signer = _KeyCachingSigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict[bytes | str | None, Signer] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer


class SignedTicket:
    """Issue and verify itsdangerous-signed tickets; also an auth backend reading ``?ticket=``.

    Args:
        secret_keys: signing keys, oldest to newest, each at least 16 bytes (use
            ``secrets.token_urlsafe(32)``). A single key may be passed as a string.
        max_age: seconds a ticket may be used to open a connection after it was issued.
        salt: namespaces the signatures, so a value signed for another purpose with the
            same keys is never accepted as a ticket.
        param: the query parameter the backend reads the ticket from.
        connection_max_age: if set, a connection opened with a ticket is closed (4401)
            this many seconds after the ticket was issued. An ``expires_at`` given to
            :meth:`issue` is enforced the same way; the earlier of the two wins.
        load_user: optional ``load_user(user_id)`` (sync or async) returning the user
            object for ``scope["user"]``, or None to refuse a user that no longer exists.
            Default: a :class:`~asgi_ws.auth.User` of that id.

    Raises:
        ConfigurationError: no key, a key shorter than 16 bytes, or a non-positive max_age.
    """

    name = "ticket"

    def __init__(
        self,
        secret_keys: Iterable[str | bytes] | str | bytes,
        *,
        max_age: float = 30.0,
        salt: str = "asgi_ws.ticket",
        param: str = "ticket",
        connection_max_age: float | None = None,
        load_user: LoadUser | None = None,
    ) -> None:
        keys = [secret_keys] if isinstance(secret_keys, (str, bytes)) else list(secret_keys)
        if not keys:
            raise ConfigurationError("SignedTicket needs at least one secret key in secret_keys")
        for key in keys:
            if len(key.encode() if isinstance(key, str) else key) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"SignedTicket secret keys must be at least {MIN_KEY_BYTES} bytes; "
                    "generate one with secrets.token_urlsafe(32)"
                )
        if max_age <= 0:
            raise ConfigurationError("SignedTicket max_age must be a positive number of seconds")
        if connection_max_age is not None and connection_max_age <= 0:
            raise ConfigurationError("SignedTicket connection_max_age must be positive or None")
        self._serializer = _TicketSerializer(keys, salt=salt)
        self.max_age = max_age
        self.param = param
        self.connection_max_age = connection_max_age
        self.load_user = load_user

    def issue(
        self,
        user_id: str,
        *,
        scopes: Iterable[str] = (),
        expires_at: float | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a ticket for ``user_id``, signed with the newest key.

        Args:
            user_id: identifies the user; becomes ``scope["user"]`` through ``load_user``.
            scopes: permissions copied to ``scope["auth"].scopes``.
            expires_at: wall-clock time after which connections opened with this ticket
                are closed with 4401 (for instance the expiry of the user's session).
            claims: extra JSON-serialisable data, found in ``scope["auth"].claims``.
        """
        payload: dict[str, Any] = {"sub": str(user_id)}
        if scopes:
            payload["scp"] = list(scopes)
        if expires_at is not None:
            payload["exp"] = float(expires_at)
        if claims:
            payload["cl"] = dict(claims)
        return self._serializer.dumps(payload)

    async def verify(self, token: str) -> Identity:
        """Check a ticket and return its identity.

        Raises:
            CredentialsExpired: older than ``max_age``, or past its ``expires_at``.
            AuthenticationFailed: tampered, signed with an unknown or retired key,
                malformed, or its user is unknown to ``load_user``.
        """
        try:
            payload, signed_at = self._serializer.loads(
                token,
                max_age=self.max_age,  # type: ignore[arg-type]  # typed int, compared as a number
                return_timestamp=True,
            )
        except SignatureExpired as exc:
            signed = exc.date_signed.timestamp() if exc.date_signed is not None else None
            age = f"issued {time.time() - signed:.0f} s ago, " if signed is not None else ""
            raise CredentialsExpired("ticket expired", detail=f"{age}max_age {self.max_age:g} s") from exc
        except BadSignature as exc:
            # The detail says which check failed; itsdangerous's message quotes the signature.
            detail = "malformed payload" if isinstance(exc, BadPayload) else "bad signature or format"
            raise AuthenticationFailed("invalid ticket", detail=detail) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("sub"), str):
            raise AuthenticationFailed("invalid ticket", detail="no user id in the payload")
        expiries = []
        if isinstance(payload.get("exp"), (int, float)):
            expiries.append(float(payload["exp"]))
        if self.connection_max_age is not None:
            expiries.append(signed_at.timestamp() + self.connection_max_age)
        expires_at = min(expiries) if expiries else None
        if expires_at is not None and expires_at <= time.time():
            raise CredentialsExpired("ticket expired", detail="past its expires_at or connection_max_age")
        user: Any = User(payload["sub"])
        if self.load_user is not None:
            user = self.load_user(payload["sub"])
            if inspect.isawaitable(user):
                user = await user
            if user is None:
                raise AuthenticationFailed("unknown user", detail="load_user returned None")
        scopes = payload.get("scp") or []
        claims = payload.get("cl")
        return Identity(
            user=user,
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
            expires_at=expires_at,
            claims=claims if isinstance(claims, dict) else {},
            backend=self.name,
        )

    @property
    def query_params(self) -> tuple[str, ...]:
        """The query parameters this backend reads a credential from (masked in server logs)."""
        return (self.param,)

    async def authenticate(self, scope: Scope) -> Identity | None:
        """Backend interface: verify the ticket in the query string, if there is one."""
        token = query_param(scope, self.param)
        if token is None:
            return None
        if not token:
            raise AuthenticationFailed("empty ticket")
        return await self.verify(token)

    def hidden_subprotocols(self, scope: Scope) -> Collection[str]:
        return ()


__all__ = ["SignedTicket"]
