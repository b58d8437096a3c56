"""WebSocket close codes: RFC 6455's, and the library's own in the 4000-4999 range.

The library's codes follow one mnemonic, 4000 plus the nearest HTTP status, so a client
author can guess their meaning: 4401 is "your credentials ran out", 4408 "you stopped
answering". ``docs/close-codes.md`` lists which middleware sends which code and why.
"""

from __future__ import annotations

from enum import IntEnum

from .exceptions import ConfigurationError


class CloseCode(IntEnum):
    """Close codes sent or understood by asgi_ws."""

    # RFC 6455 section 7.4.1 and the IANA registry.
    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RECEIVED = 1005  # never sent on the wire: "the peer sent no code"
    ABNORMAL_CLOSURE = 1006  # never sent on the wire: "the connection dropped"
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008  # rate limit exceeded with the "close" policy
    MESSAGE_TOO_BIG = 1009  # an inbound message over max_message_size
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # slow consumer closed by the backpressure "close" policy
    BAD_GATEWAY = 1014

    # asgi_ws application codes (4000 + nearest HTTP status).
    CREDENTIALS_EXPIRED = 4401  # the handshake credentials' expiry passed on a live connection
    CREDENTIALS_REVOKED = 4403  # the credentials were revoked or no longer grant access
    SESSION_LOST = 4404  # the session store no longer has the session (flushed, evicted): start a new one
    HEARTBEAT_TIMEOUT = 4408  # no pong within the heartbeat timeout
    SESSION_REPLACED = 4409  # the same session was resumed on another socket
    IDLE_TIMEOUT = 4410  # no message in either direction within idle_timeout


def is_library_code(code: int) -> bool:
    """Return True for a code in the application range 4000-4999 that asgi_ws defines."""
    return 4000 <= code <= 4999 and code in CloseCode._value2member_map_


#: Codes below 3000 that an endpoint may put in a close frame and a peer accepts (RFC 6455
#: section 7.4.1 and the IANA registry). 1005, 1006 and 1015 are never sent on the wire; 1004
#: is reserved; 1010 is for clients only.
SENDABLE_PROTOCOL_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})


def is_sendable(code: int) -> bool:
    """Return True when a server may send ``code`` in a close frame and every peer accepts it."""
    return code in SENDABLE_PROTOCOL_CODES or 3000 <= code <= 4999


def check_close_code(code: object, name: str = "close_code") -> int:
    """Return ``code`` as an int when the library may send it; raise ConfigurationError otherwise.

    Every option naming a close code the library will send is checked here, at construction.
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise ConfigurationError(f"{name} must be an int close code, not {code!r}")
    if not is_sendable(code):
        raise ConfigurationError(
            f"{name}={int(code)} cannot be sent in a close frame: use 1000, 1001, 1008, 1009, 1011-1013 or "
            "an application code in 3000-4999 (1005, 1006 and 1015 are never sent on the wire)"
        )
    return int(code)


MAX_REASON_BYTES = 123


def truncate_reason(reason: str) -> str:
    """Cut ``reason`` to the 123 UTF-8 bytes a close frame can carry, never mid-character."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


__all__ = [
    "MAX_REASON_BYTES",
    "SENDABLE_PROTOCOL_CODES",
    "CloseCode",
    "check_close_code",
    "is_library_code",
    "is_sendable",
    "truncate_reason",
]
