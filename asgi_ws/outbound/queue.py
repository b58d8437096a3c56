"""The outbound queue and its overflow decisions, without I/O.

A connection's messages wait here only while a write is blocked (the client stopped reading):
:class:`OutboundQueue` decides, for each message offered, whether it is queued, replaces a
queued one (``conflate``), is dropped (``drop_newest``), pushes the oldest ones out
(``drop_oldest``) or closes the connection (``close``), given its limits and what it holds.
It counts what it decides. It knows nothing of sockets, tasks or the event loop: the outbound
path (:mod:`asgi_ws.outbound.path`) writes what it pops and acts on its verdicts, and the
tests drive it directly with any sequence of offers and pops.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Final

from ..exceptions import ConfigurationError
from ..types import Message
from .limits import POLICIES, QueueLimits

# Verdicts of OutboundQueue.offer.
ENQUEUED: Final = 0  # queued (after dropping older messages, with drop_oldest)
CONFLATED: Final = 1  # replaced the queued message of the same key, in place
DROPPED: Final = 2  # not queued, counted as dropped
CLOSE: Final = 3  # not queued, counted as dropped: the connection must close (the close policy)


class Entry:
    """A queued message; ``app`` False for the application's own accept/close, which are never
    dropped, never counted and never measured against the limits' bytes."""

    __slots__ = ("app", "key", "message", "size")

    def __init__(self, message: Message, size: int, key: Hashable | None = None, app: bool = True) -> None:
        self.message = message
        self.size = size
        self.key = key
        self.app = app


class OutboundQueue:
    """Messages waiting behind a blocked write, bounded by :class:`~asgi_ws.outbound.QueueLimits`.

    Attributes:
        limits: the bounds and policies.
        queued: application messages queued.
        queued_bytes: their payload, in bytes (:func:`~asgi_ws.outbound.message_size`).
        dropped: application messages dropped by a policy (or by :meth:`clear`), over the queue's life.
        conflated: application messages replaced by a newer one with the same key, over its life.
    """

    __slots__ = ("_entries", "_keys", "conflated", "dropped", "limits", "queued", "queued_bytes")

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self._entries: collections.deque[Entry] = collections.deque()
        self._keys: dict[Hashable, Entry] | None = None
        self.queued = 0
        self.queued_bytes = 0
        self.dropped = 0
        self.conflated = 0

    def __len__(self) -> int:
        """Entries queued, the application's accept/close included."""
        return len(self._entries)

    def fits(self, size: int) -> bool:
        """Whether one more message of ``size`` bytes fits; an empty queue takes any one message."""
        entries = self._entries
        if not entries:
            return True
        limits = self.limits
        if limits.max_messages is not None and len(entries) >= limits.max_messages:
            return False
        return limits.max_bytes is None or self.queued_bytes + size <= limits.max_bytes

    def offer(self, message: Message, size: int, policy: str, key: Hashable | None = None) -> int:
        """Queue an application message of ``size`` bytes, applying ``policy`` if it does not fit.

        ``block`` (which cannot wait here: the caller waits for room before offering) and
        ``conflate`` without a queued twin apply the limits' fallback. Returns
        :data:`ENQUEUED`, :data:`CONFLATED`, :data:`DROPPED` or :data:`CLOSE`.

        Raises:
            ConfigurationError: ``policy`` is not a policy.
        """
        limits = self.limits
        if policy == "conflate":
            if key is None and limits.conflate_key is not None:
                key = limits.conflate_key(message)
            queued = self._keys.get(key) if key is not None and self._keys else None
            if queued is not None:  # a message for this key still waits: replace it in place
                self.queued_bytes += size - queued.size
                queued.message, queued.size = message, size
                self.conflated += 1
                return CONFLATED
        elif policy not in POLICIES:
            raise ConfigurationError(f"overflow policy must be one of {sorted(POLICIES)}, not {policy!r}")
        else:
            key = None
        if self.fits(size):
            self._append(Entry(message, size, key))
            return ENQUEUED
        if policy in ("block", "conflate"):
            policy = limits.fallback
        if policy == "drop_oldest":
            while not self.fits(size) and self._drop_oldest():
                pass
            if self.fits(size):
                self._append(Entry(message, size, key))
                return ENQUEUED
            # only the application's own accept/close are queued: nothing to drop
        self.dropped += 1
        return CLOSE if policy == "close" else DROPPED

    def push_protocol(self, message: Message) -> None:
        """Queue the application's own accept/close: in order with its messages, never dropped."""
        self._entries.append(Entry(message, 0, app=False))

    def readmit(self, message: Message, size: int) -> None:
        """Queue an application message that was accepted already, whatever the limits (a batch
        that waited for the end of a loop turn when a write suspended)."""
        self._append(Entry(message, size))

    def pop(self) -> Entry:
        """Take the oldest entry (the queue must not be empty)."""
        entry = self._entries.popleft()
        self._forget(entry)
        return entry

    def pop_texts(self, max_messages: int, max_bytes: int) -> list[Entry]:
        """Take the oldest application text messages, in order, while they are consecutive and
        within ``max_messages`` and ``max_bytes`` together (the first one whatever its size);
        an empty list when the oldest entry is something else. A text that cannot be sent (a
        lone surrogate) ends the run and is never taken: written alone, its error stays its own."""
        entries = self._entries
        taken: list[Entry] = []
        total = 0
        while entries and len(taken) < max_messages:
            entry = entries[0]
            message = entry.message
            text = message.get("text")
            if not entry.app or text is None or message.get("bytes") is not None:
                break
            if not text.isascii() and not _sendable(text):
                break
            total += entry.size
            if taken and total > max_bytes:
                break
            entries.popleft()
            self._forget(entry)
            taken.append(entry)
        return taken

    def clear(self) -> None:
        """Drop everything: the application messages are counted as dropped."""
        for entry in self._entries:
            if entry.app:
                self.dropped += 1
        self._entries.clear()
        self._keys = None
        self.queued = self.queued_bytes = 0

    def messages(self) -> list[Message]:
        """The queued messages, oldest first (tests, introspection)."""
        return [entry.message for entry in self._entries]

    def _append(self, entry: Entry) -> None:
        self._entries.append(entry)
        self.queued += 1
        self.queued_bytes += entry.size
        if entry.key is not None:
            if self._keys is None:
                self._keys = {}
            self._keys[entry.key] = entry

    def _drop_oldest(self) -> bool:
        """Drop the oldest application message; False when only protocol messages are queued."""
        for i, entry in enumerate(self._entries):
            if entry.app:
                del self._entries[i]
                self._forget(entry)
                self.dropped += 1
                return True
        return False

    def _forget(self, entry: Entry) -> None:
        if not entry.app:
            return
        self.queued -= 1
        self.queued_bytes -= entry.size
        keys = self._keys
        if entry.key is not None and keys is not None and keys.get(entry.key) is entry:
            del keys[entry.key]


def _sendable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["CLOSE", "CONFLATED", "DROPPED", "ENQUEUED", "Entry", "OutboundQueue"]
