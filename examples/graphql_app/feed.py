"""RoomFeed: room messages for server-side consumers (GraphQL subscription resolvers).

Rooms delivers to WebSocket *members*; a resolver is not one. Until ``Rooms.subscribe()``
(issue 11) gives server code its own subscription to a room, this adapter bridges the gap in
a few lines, over the broker directly:

- :meth:`RoomFeed.publish` is ``rooms.publish`` (every WebSocket member of the room, in every
  process, gets the message as usual) plus a delivery to this process's resolvers;
- the resolvers of the *other* processes get it from the broker: the feed keeps its own broker
  connection, subscribes to the room's channel (``"<namespace>:<room>"``, Rooms' naming) while
  a resolver of this process follows the room, and decodes Rooms' envelopes
  (``asgi_ws.rooms.envelope``), skipping its own process's publishes, already delivered.

Each resolver reads a bounded queue: a slow GraphQL client loses the oldest messages, never
grows the server's memory. On ``memory://`` (one process) no broker connection is made.
Limits of the bridge: a publish made with ``rooms.publish`` directly (not ``feed.publish``)
in the same process does not reach this process's resolvers, and ``exclude`` is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgi_ws import Rooms
from asgi_ws.brokers import Broker, MemoryBroker, broker_from_url
from asgi_ws.rooms import envelope

logger = logging.getLogger("examples.graphql_app")


class RoomFeed:
    """Room messages as asyncio queues, for code that is not a WebSocket member.

    Args:
        rooms: the application's Rooms (its broker URL and namespace are reused).
        max_queue: messages kept per subscriber at most; beyond, the oldest is dropped.
    """

    def __init__(self, rooms: Rooms, *, max_queue: int = 100) -> None:
        self.rooms = rooms
        self.max_queue = max_queue
        self.dropped = 0
        self._queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._broker: Broker | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect the feed's own broker connection (none on ``memory://``)."""
        await self.rooms.start()
        if self._broker is None and not isinstance(self.rooms.broker, MemoryBroker):
            broker = broker_from_url(self.rooms.broker.url)
            await broker.connect(self._on_broker_message)
            self._broker = broker

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()
            self._broker = None

    async def publish(self, room: str, data: Any) -> None:
        """Publish to the room's WebSocket members everywhere and to every process's resolvers."""
        await self.rooms.publish(room, data)
        # The same value the other processes decode from the envelope: JSON round-tripped.
        kind, payload = envelope.payload_of(data)
        self._deliver(room, _value(kind, payload))

    @contextlib.asynccontextmanager
    async def subscribe(self, room: str) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue receiving what is published to ``room`` while the block runs."""
        queue: asyncio.Queue[Any] = asyncio.Queue(self.max_queue)
        async with self._lock:
            followers = self._queues.setdefault(room, set())
            if not followers and self._broker is not None:
                await self._broker.subscribe(self._channel(room))
            followers.add(queue)
        try:
            yield queue
        finally:
            async with self._lock:
                followers.discard(queue)
                if not followers:
                    del self._queues[room]
                    if self._broker is not None:
                        with contextlib.suppress(Exception):  # closing, broker down: nothing to undo
                            await self._broker.unsubscribe(self._channel(room))

    def _channel(self, room: str) -> str:
        return f"{self.rooms.namespace}:{room}"

    def _on_broker_message(self, channel: str, payload: bytes, position: str | None = None, /) -> None:
        room = channel.partition(":")[2]
        try:
            kind, body, node, _exclude = envelope.decode(payload)
        except envelope.EnvelopeError as exc:
            logger.warning("ignored a message on %r that is not a Rooms envelope: %s", channel, exc)
            return
        if node != self.rooms.node:  # this process's own publishes were delivered by publish()
            self._deliver(room, _value(kind, body))

    def _deliver(self, room: str, value: Any) -> None:
        for queue in self._queues.get(room, ()):
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(value)


def _value(kind: str, payload: bytes) -> Any:
    if kind == "json":
        return json.loads(payload)
    if kind == "text":
        return payload.decode()
    return payload


__all__ = ["RoomFeed"]
