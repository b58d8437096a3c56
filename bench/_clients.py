"""picows clients for the benchmarks: a C-speed WebSocket client, so the load side is not the bottleneck."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class Counter(WSListener):  # type: ignore[misc]
    """Counts text frames; calls ``on_message(listener, payload)`` for each."""

    def __init__(self, on_message: Callable[[Counter, bytes], None] | None = None) -> None:
        self.count = 0
        self.transport: WSTransport | None = None
        self.closed = asyncio.get_event_loop().create_future()
        self.on_message = on_message

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.count += 1
            if self.on_message is not None:
                self.on_message(self, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def connect_many(
    url: str,
    count: int,
    factory: Callable[[], Counter] = Counter,
    *,
    batch: int = 200,
    headers: dict[str, str] | None = None,
) -> list[Counter]:
    """Open ``count`` connections, ``batch`` at a time."""
    listeners: list[Counter] = []
    for start in range(0, count, batch):
        pairs = await asyncio.gather(
            *(ws_connect(factory, url, extra_headers=headers) for _ in range(min(batch, count - start)))
        )
        listeners += [listener for _, listener in pairs]
    return listeners


def send_text(listener: Counter, text: bytes) -> None:
    assert listener.transport is not None
    listener.transport.send(WSMsgType.TEXT, text)


def close_all(listeners: list[Counter]) -> None:
    for listener in listeners:
        if listener.transport is not None:
            listener.transport.disconnect()
