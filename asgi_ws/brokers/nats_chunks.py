"""Payloads over a NATS server's ``max_payload``, sent as chunks (pure, no I/O).

:func:`split` cuts a payload into chunks that each carry an ``Asgi-Ws-Chunk`` header
(``"<message id> <index>/<count>"``); :class:`Reassembler` joins them again on receipt, with a
bound on what it holds. NATS core is at-most-once: a message one of whose chunks was lost
is dropped whole, never delivered in part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from .._repeated import RepeatedLog

#: Lines the network can repeat for every message: at once, then at most one a minute.
_repeated = RepeatedLog(logging.getLogger("asgi_ws.brokers.nats"), 60.0)

CHUNK_HEADER = "Asgi-Ws-Chunk"  # "<message id> <index>/<count>"
HEADER_ROOM = 256  # bytes of max_payload left to a chunk's header block


def split(payload: bytes, max_payload: int, msg_id: str) -> Iterator[tuple[bytes, dict[str, str]]]:
    """The chunks of ``payload`` (message ``msg_id``) and their headers, in order, each chunk
    with its header within ``max_payload``."""
    step = max_payload - HEADER_ROOM
    count = -(-len(payload) // step)
    for index, start in enumerate(range(0, len(payload), step)):
        yield payload[start : start + step], {CHUNK_HEADER: f"{msg_id} {index}/{count}"}


class Reassembler:
    """Joins chunked messages, holding at most ``limit`` bytes of incomplete ones.

    A message one of whose chunks was lost (NATS core is at-most-once) is dropped, as is the least
    recently extended incomplete message when ``limit`` is exceeded; ``dropped`` counts them.
    """

    MAX_PENDING = 1024  # incomplete and broken messages tracked at most

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._parts: dict[str, list[bytes]] = {}
        self._held = 0
        self._broken: dict[str, None] = {}  # ids whose remaining chunks are ignored

    def add(self, header: str, chunk: bytes) -> bytes | None:
        """Take one chunk; return the whole payload on its last chunk, else None.

        Raises:
            ValueError: ``header`` is not ``"<message id> <index>/<count>"``.
        """
        msg_id, _, position = header.partition(" ")
        index_text, _, count_text = position.partition("/")
        index, count = int(index_text), int(count_text)
        if not msg_id or not 0 <= index < count:
            raise ValueError(f"malformed {CHUNK_HEADER} header: {header!r}")
        last = index == count - 1
        if msg_id in self._broken:
            if last:
                del self._broken[msg_id]
            return None
        parts = self._parts.pop(msg_id, [])
        if len(parts) != index:
            self._held -= sum(map(len, parts))
            self._drop(msg_id, "a chunk is missing", last)
            return None
        parts.append(chunk)
        if last:
            payload = b"".join(parts)
            self._held -= len(payload) - len(chunk)
            return payload
        self._parts[msg_id] = parts  # re-inserted: the dict's order is least recently extended first
        self._held += len(chunk)
        while self._held > self.limit or len(self._parts) > self.MAX_PENDING:
            oldest = next(iter(self._parts))
            self._held -= sum(map(len, self._parts.pop(oldest)))
            self._drop(oldest, f"over the reassembly limit of {self.limit} bytes", False)
        return None

    def _drop(self, msg_id: str, why: str, last: bool) -> None:
        self.dropped += 1
        _repeated.warning("a chunked NATS message was dropped (%s); %d dropped so far", why, self.dropped, key="chunk")
        if not last:
            self._broken[msg_id] = None
            while len(self._broken) > self.MAX_PENDING:
                del self._broken[next(iter(self._broken))]


__all__ = ["CHUNK_HEADER", "HEADER_ROOM", "Reassembler", "split"]
