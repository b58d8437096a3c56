"""Drive an ASGI WebSocket app in memory, the way uvicorn's sansio implementation behaves.

Unlike asgiref's ApplicationCommunicator, the harness lets a test stop the "socket" from
being writable (a client that stopped reading) and observe everything the app sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgi_ws.types import Message
from tests.support.asgi import ws_scope


class Harness:
    def __init__(self, app: Any, scope: dict[str, Any] | None = None) -> None:
        self.app = app
        self.scope = scope or ws_scope()
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed: Message | None = None
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            if self.closed is None:
                self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            try:
                await asyncio.wait_for(self.task, 2)
            except asyncio.TimeoutError:
                self.task.cancel()

    async def start(self, *, expect_accept: bool = True) -> None:
        self.task = asyncio.create_task(self.app(self.scope, self.inbox.get, self._send))
        self.inbox.put_nowait({"type": "websocket.connect"})
        if expect_accept:
            message = await self.next()
            assert message["type"] == "websocket.accept", message

    async def _send(self, message: Message) -> None:
        await self.writable.wait()
        if self.closed is not None:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close'.")
        if message["type"] == "websocket.close":
            self.closed = message
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message.get("code", 1000)})
        self.outbox.put_nowait(message)

    def send_text(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    def send_bytes(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def disconnect(self, code: int = 1000) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    async def next(self, timeout: float = 2.0) -> Message:
        return await asyncio.wait_for(self.outbox.get(), timeout)

    async def next_text(self, timeout: float = 2.0) -> str:
        message = await self.next(timeout)
        assert message["type"] == "websocket.send" and "text" in message, message
        return str(message["text"])

    async def next_json(self, timeout: float = 2.0) -> Any:
        return json.loads(await self.next_text(timeout))

    async def nothing(self, timeout: float = 0.1) -> bool:
        """True when the app sends nothing within ``timeout`` seconds."""
        try:
            message = await asyncio.wait_for(self.outbox.get(), timeout)
        except asyncio.TimeoutError:
            return True
        self.outbox.put_nowait(message)
        return False
