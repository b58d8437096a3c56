from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

from websockets.client import ClientProtocol
from websockets.frames import Close, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """Await ``awaitable``; fail saying ``what`` did not happen after ``seconds`` (a guard, not a measurement)."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within {seconds} s") from None


class SlowReader:
    """A WebSocket client that reads only when told: a raw socket with a small receive buffer,
    frames parsed by websockets' sans-I/O protocol (websockets' asyncio client keeps reading)."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port = port
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        self.events: list[Any] = []

    async def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # no autotuning up to 32 MiB
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while not self.events:
            await self._read()
        assert isinstance(self.events.pop(0), Response) and self.protocol.handshake_exc is None

    def send_text(self, text: str) -> None:
        """Send one text frame (the client still reads nothing)."""
        self.protocol.send_text(text.encode())
        self._flush()

    async def _read(self) -> None:
        data = await self.reader.read(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self.events.extend(self.protocol.events_received())
        self._flush()  # the answer to a close frame

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data and not self.writer.is_closing():
                self.writer.write(data)

    async def read_all(self) -> tuple[list[str], Close | None]:
        """Every text frame until the connection closes, and the close frame's code and reason."""
        texts: list[str] = []

        async def to_the_end() -> Close | None:
            while True:
                while self.events:
                    frame = self.events.pop(0)
                    if frame.opcode == Opcode.TEXT:
                        texts.append(frame.data.decode())
                    elif frame.opcode == Opcode.CLOSE:
                        self.writer.close()
                        return Close.parse(frame.data)
                if self.reader.at_eof():
                    return None
                await self._read()

        return texts, await within(to_the_end(), 10, "the server writing its backlog and closing")


async def backlogged_reader(port: int, path: str = "/ws", channel: str = "held") -> SlowReader:
    """A subscriber of ``asgi-ws serve`` on ``port`` (started with ``--allow-missing-origin`` and a
    high ``--rate``) with messages queued behind its blocked socket: a drain of that server waits
    for it (up to ``--drain-timeout``) until it reads (:meth:`SlowReader.read_all`)."""
    from tests.support.clients import opened, recv_json_until

    reader = SlowReader(port, path)
    await reader.open()
    reader.send_text(json.dumps({"$ws": "subscribe", "channel": channel}))
    while not any(b'"subscribed"' in getattr(e, "data", b"") for e in reader.events):
        await within(reader._read(), 10, "the reader's subscription")
    reader.events.clear()
    async with opened(f"ws://127.0.0.1:{port}{path}", ping_interval=None) as publisher:
        # 15 MiB: more than both sockets' buffers. The last publish asks for its confirmation,
        # sent once the server has handed it (and so every earlier one) to the reader's queue.
        for i in range(256):
            message = {"$ws": "publish", "channel": channel, "data": f"{i:04d}".ljust(60_000)}
            await publisher.send(json.dumps({**message, "id": "last"} if i == 255 else message))
        await recv_json_until(publisher, lambda m: m.get("$ws") == "published", timeout=30, what="the confirmation")
    return reader
