"""The asgi_ws control protocol: the one codec every middleware and client uses.

A control message is a WebSocket **text** frame holding a JSON object whose **first** key is
``"$ws"`` and whose value is the operation name::

    {"$ws":"ping","id":7}

Telling control messages from the application's own is one ``startswith`` on the frame
(:data:`PREFIX`, the six characters ``{"$ws"``; any JSON serializer that writes that key
first produces it, with or without spaces), so application messages are never parsed. Binary frames and
text frames not starting with the prefix belong to the application, untouched. The full
specification, for client authors, is ``docs/protocol.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .exceptions import AsgiWsError

#: Every control message starts with exactly these characters.
PREFIX = '{"$ws"'
#: Key naming the operation; always the first key of the object.
OP_KEY = "$ws"
#: Highest protocol version this library speaks.
VERSION = 1
#: Control messages longer than this many characters are refused without parsing.
MAX_CONTROL_LENGTH = 65_536

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class ProtocolError(AsgiWsError, ValueError):
    """Raised when a control message is malformed; answered with an ``error`` message.

    Args:
        code: machine-readable error code sent to the client (``bad_json``...).
        message: human-readable explanation.
        ref: the operation the error refers to, when known.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref


def is_control(text: str) -> bool:
    """Return True when the text frame ``text`` is a control message (by its prefix alone)."""
    return text.startswith(PREFIX)


def encode(op: str, fields: Mapping[str, Any] | None = None) -> str:
    """Return the text frame of control message ``op`` with ``fields`` (JSON-serialisable)."""
    return _encoder.encode({OP_KEY: op, **fields} if fields else {OP_KEY: op})


def error(code: str, message: str, ref: str | None = None) -> str:
    """Return the text frame of an ``error`` control message."""
    fields: dict[str, Any] = {"code": code, "message": message}
    if ref is not None:
        fields["ref"] = ref
    return encode("error", fields)


def decode(text: str) -> dict[str, Any]:
    """Parse a control message; return its object (``obj["$ws"]`` is the operation).

    Raises:
        ProtocolError: for anything that is not a well-formed control message: too long,
            not JSON, not an object, or an operation that is not a short string.
    """
    if len(text) > MAX_CONTROL_LENGTH:
        raise ProtocolError("too_large", f"control messages are limited to {MAX_CONTROL_LENGTH} characters")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"control message is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "control message must be a JSON object")
    op = obj.get(OP_KEY)
    if not isinstance(op, str) or not op or len(op) > 64:
        raise ProtocolError("bad_message", 'the "$ws" member must name the operation')
    return obj


def field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """Return ``obj[name]`` checked against ``kind``; raise ``bad_field`` when it is missing or wrong.

    ``bool`` never passes for ``int`` (JSON ``true`` is not a number).
    """
    value = obj.get(name)
    if value is None:
        if required:
            raise ProtocolError("bad_field", f'"{name}" is required', obj.get(OP_KEY))
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ProtocolError("bad_field", f'"{name}" has the wrong type', obj.get(OP_KEY))
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


__all__ = [
    "MAX_CONTROL_LENGTH",
    "OP_KEY",
    "PREFIX",
    "VERSION",
    "ProtocolError",
    "decode",
    "encode",
    "error",
    "field",
    "is_control",
]
