"""How a published message travels between processes, and how it is framed for members.

A publish is encoded **once**. Between processes it is an :func:`encode`d envelope of bytes:
a fixed header (version, kind, the publishing node, the member to exclude) followed by the
payload. For members it becomes one ASGI ``websocket.send`` message per member format,
shared by every member of that format:

- ``raw``: the payload itself (the application's own message format);
- ``channel``: ``{"channel": <room>, "data": <payload>}``, for the multiplexed pub/sub
  protocol; a JSON payload is spliced in as it is, never parsed and re-serialised.

Server-side subscriptions (:meth:`Rooms.subscribe <asgi_ws.Rooms.subscribe>`) get the value that
was published instead, decoded once per message (:func:`value_of`).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal, NamedTuple

from ..brokers.frames import FrameError, pack_frame, unpack_frame
from ..types import Message

Kind = Literal["json", "text", "binary"]
Format = Literal["raw", "channel"]

_KINDS: dict[str, int] = {"json": 0, "text": 1, "binary": 2}
_KIND_NAMES: dict[int, Kind] = {0: "json", 1: "text", 2: "binary"}
_VERSION = 1
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# What the application publishes must be JSON every client parses: no NaN or Infinity.
_dumps_data = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class EnvelopeError(ValueError):
    """Raised for bytes that are not an envelope of this library's version."""


class Payload(NamedTuple):
    """What was published, classified and encoded once (:func:`payload_of`).

    Attributes:
        kind: ``"json"``, ``"text"`` or ``"binary"``.
        body: the encoded bytes (UTF-8 for json and text).
    """

    kind: Kind
    body: bytes


def payload_of(data: Any) -> Payload:
    """Classify and encode what the application published: bytes, str, or a JSON value (a
    :class:`Payload` is returned as it is: encode once, publish many).

    Raises:
        ValueError: ``data`` cannot be sent: a string with a lone surrogate (not Unicode
            text), a NaN or infinite number, a circular or too deeply nested structure.
        TypeError: ``data`` holds something that is not JSON-serialisable.
    """
    if isinstance(data, Payload):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Payload("binary", bytes(data))
    try:
        if isinstance(data, str):
            return Payload("text", data.encode())
        return Payload("json", _dumps_data(data).encode())
    except UnicodeEncodeError:
        raise ValueError(
            "published data holds a lone surrogate (U+D800 to U+DFFF not in a pair): it is not Unicode text"
        ) from None
    except RecursionError:
        raise ValueError("published data is nested too deeply to be encoded as JSON") from None
    except ValueError as exc:  # NaN or infinity, a circular reference
        raise ValueError(f"published data cannot be encoded as JSON: {exc}") from None


def encode(kind: Kind, payload: bytes, node: str, exclude: str = "") -> bytes:
    """The envelope of one publish, as it goes to the broker (a frame: asgi_ws.brokers.frames)."""
    return pack_frame(_VERSION, _KINDS[kind], node, exclude, payload)


def decode(envelope: bytes) -> tuple[Kind, bytes, str, str]:
    """Return ``(kind, payload, node, exclude)`` of an envelope.

    Raises:
        EnvelopeError: the bytes are not a whole envelope of this version: too short,
            truncated (the header announces more than there is), an unknown version or
            kind, ids or a text (or JSON) payload that are not UTF-8.
    """
    try:
        version, kind, node, exclude, payload = unpack_frame(envelope)
    except FrameError as exc:
        raise EnvelopeError(f"not an envelope: {exc}") from None
    if version != _VERSION or kind not in _KIND_NAMES:
        raise EnvelopeError(f"unknown envelope version {version} or kind {kind}")
    if kind != _KINDS["binary"]:
        try:
            payload.decode()  # members receive it as text: it must be UTF-8
        except UnicodeDecodeError:
            raise EnvelopeError("envelope holds bytes that are not UTF-8") from None
    return _KIND_NAMES[kind], payload, node, exclude


def value_of(kind: Kind, payload: bytes) -> Any:
    """What was published, from its payload: ``bytes`` for binary, ``str`` for text, the JSON value
    for JSON (a payload of this library's publishers is valid; another's may not be).

    Raises:
        EnvelopeError: a JSON payload that does not parse.
    """
    if kind == "binary":
        return payload
    if kind == "text":
        return payload.decode()
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"a JSON payload that does not parse: {exc}") from None


def message_for(fmt: Format, room: str, kind: Kind, payload: bytes) -> Message:
    """The ASGI message a member of format ``fmt`` receives for this payload (build once, share)."""
    if fmt == "raw":
        if kind == "binary":
            return {"type": "websocket.send", "bytes": payload}
        return {"type": "websocket.send", "text": payload.decode()}
    if kind == "json":
        data = payload.decode()
    elif kind == "text":
        data = _dumps(payload.decode())
    else:
        return {
            "type": "websocket.send",
            "text": f'{{"channel":{_dumps(room)},"binary":"{base64.b64encode(payload).decode()}"}}',
        }
    return {"type": "websocket.send", "text": f'{{"channel":{_dumps(room)},"data":{data}}}'}


__all__ = ["EnvelopeError", "Format", "Kind", "Payload", "decode", "encode", "message_for", "payload_of", "value_of"]
