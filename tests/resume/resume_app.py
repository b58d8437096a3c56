"""The application of the resumption tests: numbered messages on demand, and a room.

Client messages: ``emit A B`` sends the texts ``A`` .. ``B-1`` (binary for multiples of 7, to
cover both frame types); ``join R`` joins room R, ``leave R`` leaves it; ``publish R X``
publishes X to room R (``shout R X``: excluding this connection); ``count R N`` publishes
``0`` .. ``N-1`` to room R, ``blobs R N SIZE`` N messages of SIZE bytes.
``ASGI_WS_TEST_STORE`` / ``ASGI_WS_TEST_BROKER`` choose the session store and the broker, so
two server processes can share them.
"""

from __future__ import annotations

import os
from typing import Any

from asgi_ws import ResumeMiddleware, Rooms
from asgi_ws.resume import SessionStore

KEYS = ["old-key", "resume-test-key"]


def number_message(i: int) -> dict[str, Any]:
    if i % 7 == 0:
        return {"type": "websocket.send", "bytes": str(i).encode()}
    return {"type": "websocket.send", "text": str(i)}


def numbers_app(rooms: Rooms) -> Any:
    async def numbers(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            command, *args = (message.get("text") or "").split(" ")
            if command == "emit":
                for i in range(int(args[0]), int(args[1])):
                    await send(number_message(i))
            elif command == "join":
                await rooms.join(args[0], scope)
                await send({"type": "websocket.send", "text": f"joined {args[0]}"})
            elif command == "leave":
                await rooms.leave(args[0], scope)
            elif command == "publish":
                await rooms.publish(args[0], args[1])
            elif command == "shout":  # publish, excluding this connection
                await rooms.publish(args[0], args[1], exclude=scope)
            elif command == "count":  # publish "0" .. "N-1", one by one
                for i in range(int(args[1])):
                    await rooms.publish(args[0], str(i))
            elif command == "blobs":  # publish N messages of SIZE bytes: "<i>:xxx..."
                for i in range(int(args[1])):
                    await rooms.publish(args[0], f"{i}:".ljust(int(args[2]), "x"))

    return numbers


def make_app(store: str | SessionStore = "memory://", broker: str = "memory://", **options: Any) -> ResumeMiddleware:
    rooms = Rooms(broker, namespace=os.environ.get("ASGI_WS_TEST_NS", "resume"))
    return ResumeMiddleware(numbers_app(rooms), secret_keys=KEYS, store=store, rooms=rooms, **options)


app = make_app(
    broker=os.environ.get("ASGI_WS_TEST_BROKER", "memory://"),
    store=os.environ.get("ASGI_WS_TEST_STORE", "memory://"),
    window=float(os.environ.get("ASGI_WS_TEST_WINDOW", "60")),
)
