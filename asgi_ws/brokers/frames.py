"""Frames: how the library's messages are laid out in a broker payload.

Rooms' envelopes (:mod:`asgi_ws.rooms.envelope`) and BrokerChannelLayer's messages
(:mod:`asgi_ws.contrib.channels.layer_wire`) are both one frame:

=================  ==========================================================
``!BBHH`` header   version, kind, length of the first field, of the second
first field        UTF-8 text (the publishing node's id)
second field       UTF-8 text (what the kind needs: a member to skip, a target)
body               bytes, the rest
=================  ==========================================================

:func:`unpack_frame` takes any bytes: it returns the parts of a whole frame or raises
:class:`FrameError`; what the version and kind mean is the caller's to check.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!BBHH")


class FrameError(ValueError):
    """Raised for bytes that are not a whole frame."""


def pack_frame(version: int, kind: int, first: str, second: str, body: bytes) -> bytes:
    """The frame of ``body`` with its header and two text fields."""
    first_b, second_b = first.encode(), second.encode()
    return HEADER.pack(version, kind, len(first_b), len(second_b)) + first_b + second_b + body


def unpack_frame(data: bytes) -> tuple[int, int, str, str, bytes]:
    """``(version, kind, first, second, body)`` of a frame.

    Raises:
        FrameError: shorter than the header, truncated (the header announces more than
            there is), or a text field that is not UTF-8.
    """
    if len(data) < HEADER.size:
        raise FrameError("shorter than a frame header")
    version, kind, first_len, second_len = HEADER.unpack_from(data)
    start = HEADER.size
    body = start + first_len + second_len
    if len(data) < body:
        raise FrameError("truncated: the header announces more than there is")
    try:
        first = data[start : start + first_len].decode()
        second = data[start + first_len : body].decode()
    except UnicodeDecodeError:
        raise FrameError("a text field that is not UTF-8") from None
    return version, kind, first, second, data[body:]


__all__ = ["HEADER", "FrameError", "pack_frame", "unpack_frame"]
