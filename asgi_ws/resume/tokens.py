"""Resume tokens: a session id and its user, signed with itsdangerous.

The token is what lets a client claim a session on any worker process without a lookup
before the signature is checked: forged, tampered and retired-key tokens are refused
without touching the store. Its age is bounded by the resume window, and the server hands
out a fresh one while the connection is up, so only the time spent disconnected counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..exceptions import ConfigurationError


class ResumeRefused(Exception):
    """A resume request that cannot be honoured; ``code`` is sent to the client.

    Codes (``docs/resume.md``): ``invalid_token``, ``expired``, ``unknown_session``,
    ``seq_ahead``, ``gap_too_old``, ``identity_mismatch``, ``store_unavailable``, ``bad_request``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TokenSigner:
    """Signs and checks resume tokens.

    Args:
        secret_keys: signing keys, oldest first (itsdangerous's convention): tokens are
            signed with the last and accepted with any; drop a key to retire it.
        salt: namespaces these tokens from other itsdangerous signatures made with the same keys.
        max_age: seconds a token stays valid (the resume window).
    """

    def __init__(self, secret_keys: Sequence[str | bytes], *, salt: str, max_age: float) -> None:
        if isinstance(secret_keys, (str, bytes)) or not secret_keys:
            raise ConfigurationError("secret_keys must be a non-empty list of keys, oldest first")
        keys: list[Any] = list(secret_keys)
        self._serializer = URLSafeTimedSerializer(keys, salt=salt)
        self.max_age = max_age

    def sign(self, session_id: str, identity: str | None) -> str:
        return str(self._serializer.dumps({"s": session_id, "u": identity}))

    def verify(self, token: str) -> tuple[str, str | None]:
        """Return ``(session_id, identity)``.

        Raises:
            ResumeRefused: ``expired`` past the window; ``invalid_token`` for a forged,
                tampered or malformed token, or one signed with a key no longer listed.
        """
        try:
            data: Any = self._serializer.loads(token, max_age=math.ceil(self.max_age))
        except SignatureExpired:
            raise ResumeRefused("expired", "the resume token is older than the resume window") from None
        except BadSignature:
            raise ResumeRefused(
                "invalid_token", "the resume token is not valid (forged, tampered or retired key)"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("s"), str):
            raise ResumeRefused("invalid_token", "the resume token does not name a session")
        identity = data.get("u")
        return data["s"], identity if isinstance(identity, str) else None


__all__ = ["ResumeRefused", "TokenSigner"]
