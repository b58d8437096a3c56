"""What :class:`~asgi_ws.contrib.channels.BrokerChannelLayer` puts on a broker, and how a
Channels message becomes bytes.

**Messages** are msgpack, as in channels_redis (JSON cannot carry ``bytes``, which Channels
messages often hold): a message is encoded once by its sender and decoded by each receiver,
so every consumer gets a dict of its own. msgpack turns tuples into lists.

**Frames.** Every broker message is one frame (:mod:`asgi_ws.brokers.frames`, as Rooms'
envelopes): version, kind, the sending layer's node id, a target name, the body:

========  ==============================  =====================================================
kind      target                          body
========  ==============================  =====================================================
``g``     group                           the message, to the group's members in each process
``c``     channel                         the message, to one channel (a process's own or a
                                          general name)
``a``     group                           a channel name of the receiving process: group_add it
``d``     group                           a channel name: group_discard it
``f``     (empty)                         (empty): flush
``p``     a probe token                   (empty): the sender's own round trip (see ``probe``)
========  ==============================  =====================================================

:func:`unframe` accepts any bytes and either returns the parts or raises :class:`WireError`;
:meth:`MessageCodec.decode` likewise returns a dict or raises :class:`WireError`. Nothing
from a broker gets further than these two without being checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...brokers.frames import FrameError, pack_frame, unpack_frame
from ...exceptions import MissingDependencyError

VERSION = 1
GROUP, CHANNEL, ADD, DISCARD, FLUSH, PROBE = "g", "c", "a", "d", "f", "p"
KINDS = frozenset({GROUP, CHANNEL, ADD, DISCARD, FLUSH, PROBE})


class WireError(ValueError):
    """Raised for broker bytes that are not a frame (or a message) of this layer."""


def frame(kind: str, node: str, target: str = "", body: bytes = b"") -> bytes:
    """The frame of one broker message."""
    return pack_frame(VERSION, ord(kind), node, target, body)


def unframe(data: bytes) -> tuple[str, str, str, bytes]:
    """``(kind, node, target, body)`` of a frame.

    Raises:
        WireError: not a whole frame (too short, truncated, a node id or target that is not
            UTF-8), another version, an unknown kind.
    """
    try:
        version, code, node, target, body = unpack_frame(data)
    except FrameError as exc:
        raise WireError(str(exc)) from None
    kind = chr(code)
    if version != VERSION or kind not in KINDS:
        raise WireError(f"unknown frame version {version} or kind {kind!r}")
    return kind, node, target, body


class MessageCodec:
    """msgpack for Channels messages (``msgpack`` comes with ``pip install 'asgi-ws[django]'``).

    Raises:
        MissingDependencyError: msgpack is not installed.
    """

    def __init__(self) -> None:
        try:
            import msgpack  # type: ignore[import-untyped,unused-ignore]
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                "BrokerChannelLayer encodes messages with msgpack, which is not installed: "
                "pip install 'asgi-ws[django]' (or pip install 'msgpack>=1.0')"
            ) from exc
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb
        #: Decode bytes :meth:`decode` already accepted once (each receiver gets its own dict).
        self.unpack: Callable[[bytes], Any] = functools.partial(msgpack.unpackb, raw=False)

    def encode(self, message: dict[str, Any]) -> bytes:
        """The bytes of ``message``.

        Raises:
            TypeError: the message holds something msgpack cannot carry (a datetime, a set,
                an object...), or is nested too deeply.
        """
        try:
            data: bytes = self._packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"this message cannot go through the channel layer ({exc}): messages are dicts of str, "
                "bytes, int, float, bool, None, lists and dicts (msgpack)"
            ) from None
        return data

    def decode(self, data: bytes) -> dict[str, Any]:
        """A fresh dict from ``data``.

        Raises:
            WireError: not one msgpack value, or not a dict with string keys.
        """
        try:
            message = self._unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises ValueError subclasses, TypeError, StackError...
            raise WireError(f"not a msgpack message: {type(exc).__name__}") from None
        if type(message) is not dict or not all(type(key) is str for key in message):
            raise WireError("not a dict with string keys")
        return message


def owner_of(channel: str) -> str | None:
    """The node id in a process-local channel name (``prefix.<node>!suffix``), None for a general name."""
    bang = channel.find("!")
    if bang < 0:
        return None
    return channel[channel.rfind(".", 0, bang) + 1 : bang]


__all__ = [
    "ADD",
    "CHANNEL",
    "DISCARD",
    "FLUSH",
    "GROUP",
    "PROBE",
    "MessageCodec",
    "WireError",
    "frame",
    "owner_of",
    "unframe",
]
