"""Batching: the messages a connection cannot take one by one go out together, as one batch frame.

A client that asked for it in ``hello`` (``{"$ws":"hello","v":1,"batch":true}``, answered by
the ``batch`` feature of ``welcome``: docs/protocol.md, "Batches") gets, instead of several
text frames in a row, one control frame carrying them all::

    {"$ws":"batch","m":["first message","second message"]}

which its client unpacks into the messages, in order (and counts each one, for resumption).
Two moments make messages wait for a connection, and both end with one batch frame:

- **a burst**: the first message of an event-loop turn is written at once, alone; the ones
  that follow it for the same connection in the same turn (a publisher sending many in a
  row) wait for the end of the turn (:class:`Turns`), then go together;
- **a blocked write** (the client stopped reading): what queued behind it goes together when
  the socket takes writes again, as many per frame as the limits allow.

A member that keeps up with one message at a time gets each one at once, alone. Only text
messages are batched: a binary message is written alone, after what waits before it.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from .path import Outbound


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Bounds of one batch frame, announced in ``welcome`` (``features.batch``).

    Attributes:
        max_messages: messages in one batch frame at most (at least 2).
        max_bytes: their payload together at most, in UTF-8 bytes; a message larger than this
            is written alone. The frame itself is larger by its JSON: 21 bytes, 3 a message,
            and the escapes (a quote or backslash takes 2 bytes, a control character 2 or 6),
            so at most ``6 * max_bytes + 21 + 3 * max_messages`` bytes: keep that under the
            clients' largest frame (the Python client's default is 1 MiB).
    """

    max_messages: int = 256
    max_bytes: int = 65_536

    def __post_init__(self) -> None:
        for name, least in (("max_messages", 2), ("max_bytes", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigurationError(f"batch {name} must be an integer >= {least}")

    def feature(self) -> dict[str, int]:
        """What ``welcome`` announces: ``{"max_messages": ..., "max_bytes": ...}``."""
        return {"max_messages": self.max_messages, "max_bytes": self.max_bytes}

    @classmethod
    def of_feature(cls, feature: Any) -> BatchLimits:
        """The limits a ``batch`` feature announces."""
        return cls(feature["max_messages"], feature["max_bytes"])


class Turns:
    """The turns of one event loop, as batching sees them: a number that changes once a loop
    iteration after a batching connection wrote, and the connections whose batch waits for it.

    One callback a turn (scheduled by the first write that needs it), whatever the number of
    connections: a connection keeps the number of the turn of its last write alone, and a
    message that finds it current waits for the turn's end.
    """

    __slots__ = ("_loop", "armed", "due", "now")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = 0
        self.armed = False
        #: Connections with messages waiting for the end of this turn.
        self.due: list[Outbound] = []

    def arm(self) -> None:
        """Make sure this turn ends with :meth:`_end` (the next loop iteration runs it)."""
        if not self.armed:
            self.armed = True
            self._loop.call_soon(self._end)

    def _end(self) -> None:
        self.now += 1
        self.armed = False
        due = self.due
        if due:
            self.due = []
            for outbound in due:
                outbound._flush_batch()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


def turns_of(loop: asyncio.AbstractEventLoop) -> Turns:
    """The :class:`Turns` of ``loop`` (one per loop)."""
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = Turns(loop)
    return turns


class Batch:
    """The batching state of one connection: its limits, the turn of its last write alone, and
    the text messages waiting for the end of the turn."""

    __slots__ = ("frames", "max_bytes", "max_messages", "pending", "pending_bytes", "turn", "turns")

    def __init__(self, limits: BatchLimits, turns: Turns) -> None:
        self.max_messages = limits.max_messages
        self.max_bytes = limits.max_bytes
        self.turns = turns
        self.turn = -1
        self.pending: list[str] = []
        self.pending_bytes = 0
        #: Batch frames written (handed to the server).
        self.frames = 0


def text_size(text: str) -> int:
    """UTF-8 bytes of ``text``; -1 for text that cannot be sent (a lone surrogate): never batched,
    so that its error stays its own message's."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


__all__ = ["Batch", "BatchLimits", "Turns", "text_size", "turns_of"]
