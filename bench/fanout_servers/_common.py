"""What the fan-out servers share: the message, and a tiny HTTP responder for /count and /trigger."""

from __future__ import annotations

from urllib.parse import parse_qs

from asgi_ws.types import Receive, Scope, Send

SIZE = 100  # characters of the broadcast message
GROUP = "bench"


def message(tag: str) -> str:
    """The ~100-byte text message of round ``tag``; clients count it by the ``#tag#`` it starts with."""
    head = f"#{tag}#"
    return head + "x" * (SIZE - len(head))


def tag_of(scope: Scope) -> str:
    return parse_qs(scope.get("query_string", b"").decode()).get("tag", ["r0"])[0]


async def respond(send: Send, body: str, status: int = 200) -> None:
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def drain_request(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body"):
            return
