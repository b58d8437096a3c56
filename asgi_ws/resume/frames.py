"""How a session's messages are stored: a frame is ``b"t"`` + UTF-8 text or ``b"b"`` + bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: A stored frame: ``b"t"`` + UTF-8 text or ``b"b"`` + bytes.
Frame = bytes


def frame_of(message: Mapping[str, Any]) -> Frame:
    """The stored form of a ``websocket.send`` message.

    Raises :class:`UnicodeEncodeError` for text that is not valid Unicode (a lone surrogate):
    no socket could send it, so a session refuses it at the sender's call, before numbering.

    A fan-out offers one message object to every member: the last one converted is
    remembered, so a broadcast to 5,000 resumable members encodes it once, not 5,000 times.
    """
    global _last_payload, _last_frame
    payload = message.get("text")
    if payload is None:
        payload = message.get("bytes")
    # The payload object itself (str and bytes are immutable; a dict may be reused and changed).
    if payload is _last_payload and payload is not None and not isinstance(payload, (bytearray, memoryview)):
        return _last_frame
    frame = _last_frame = _frame_of(message)
    _last_payload = payload  # kept alive: no other object can take its identity meanwhile
    return frame


_last_payload: Any = None
_last_frame: Frame = b""


def _frame_of(message: Mapping[str, Any]) -> Frame:
    text = message.get("text")
    if text is not None:
        return b"t" + str(text).encode("utf-8")
    data = message.get("bytes")
    return b"b" + bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else b"b"


def message_of(frame: Frame) -> dict[str, Any]:
    """The ``websocket.send`` message of a stored frame."""
    if frame[:1] == b"t":
        return {"type": "websocket.send", "text": frame[1:].decode("utf-8", "surrogatepass")}
    return {"type": "websocket.send", "bytes": frame[1:]}


__all__ = ["Frame", "frame_of", "message_of"]
