"""Resume tokens: a session id, its user and its generation, signed with itsdangerous.

The token is what lets a client claim a session on any worker process without a lookup
before the signature is checked: forged, tampered and unknown-key tokens are refused
without touching the store. Its age is bounded by the resume window, and the server hands
out a fresh one while the connection is up, so only the time spent disconnected counts.

A token names the session's **generation**: every successful resume advances it in the
store, so a token is good for one resume only; one captured from a URL (a proxy log, the
browser history) is dead once its owner has resumed with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..exceptions import ConfigurationError

#: What an itsdangerous URL-safe timed token looks like (a leading dot: compressed payload).
_TOKEN_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: Longer tokens are refused unread (a session id, a user id and a generation fit well below).
MAX_TOKEN_LENGTH = 2048
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


class ResumeRefused(Exception):
    """A resume request that cannot be honoured; ``code`` is sent to the client.

    Codes (``docs/resume.md``): ``invalid_token``, ``expired``, ``unknown_session``,
    ``token_used``, ``seq_ahead``, ``gap_too_old``, ``identity_mismatch``,
    ``store_unavailable``, ``bad_request``.
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

    Attributes:
        unknown_key_hint: why a token may carry a key this server does not have, appended to
            the ``invalid_token`` reason (a signature cannot tell a forged token from one
            signed with another key). ``asgi-ws serve`` with random keys says they change on
            restart.
    """

    def __init__(self, secret_keys: Sequence[str | bytes], *, salt: str, max_age: float) -> None:
        if isinstance(secret_keys, (str, bytes)) or not secret_keys:
            raise ConfigurationError("secret_keys must be a non-empty list of keys, oldest first")
        keys: list[Any] = list(secret_keys)
        self._serializer = URLSafeTimedSerializer(keys, salt=salt)
        self.max_age = max_age
        self.unknown_key_hint = "a retired key, or another deployment's"

    def sign(self, session_id: str, identity: str | None, generation: int = 0) -> str:
        return str(self._serializer.dumps({"s": session_id, "u": identity, "g": generation}))

    def verify(self, token: str) -> tuple[str, str | None, int]:
        """Return ``(session_id, identity, generation)``.

        Raises:
            ResumeRefused: ``expired`` past the window; ``invalid_token`` for a malformed token,
                a forged or tampered one, or one signed with a key no longer listed.
        """
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.fullmatch(token):
            raise ResumeRefused("invalid_token", "the resume token is malformed")
        try:
            data: Any = self._serializer.loads(token, max_age=math.ceil(self.max_age))
        except SignatureExpired:
            raise ResumeRefused("expired", "the resume token is older than the resume window") from None
        except BadSignature:
            raise ResumeRefused(
                "invalid_token",
                f"the resume token was forged, tampered with, or signed with an unknown key ({self.unknown_key_hint})",
            ) from None
        session_id = data.get("s") if isinstance(data, dict) else None
        generation = data.get("g", 0) if isinstance(data, dict) else None
        if not (isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id)):
            raise ResumeRefused("invalid_token", "the resume token does not name a session")
        if type(generation) is not int or generation < 0:  # not bool, not float
            raise ResumeRefused("invalid_token", "the resume token does not name a generation of its session")
        identity = data.get("u")
        return session_id, identity if isinstance(identity, str) else None, generation


__all__ = ["MAX_TOKEN_LENGTH", "ResumeRefused", "TokenSigner"]
