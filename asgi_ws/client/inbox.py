"""The bounded queue of data frames between the connection and the application."""

from __future__ import annotations

import asyncio
from collections import deque

from .exceptions import ClientClosed

Data = str | bytes


class Inbox:
    """Data frames received and not read by the application yet, at most ``maxsize``.

    When it is full the connection stops reading the socket, which pushes back on the
    server (whose backpressure policy then applies) instead of growing without bound. Once
    ended, the frames still held are returned first, then :meth:`get` raises the end.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Data] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._end: ClientClosed | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: Data) -> None:
        """Add a frame; wait while the inbox is full (not once it ended: the frame is kept)."""
        while len(self._items) >= self._maxsize and self._end is None:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    async def get(self) -> Data:
        """The oldest frame; wait for one. Raises the end once nothing is left."""
        while not self._items:
            if self._end is not None:
                raise self._end
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def clear(self) -> None:
        self._items.clear()

    def end(self, exc: ClientClosed) -> None:
        """No frame comes any more: :meth:`get` raises ``exc`` once the inbox is empty."""
        self._end = exc
        self._readable.set()
        self._writable.set()


__all__ = ["Data", "Inbox"]
