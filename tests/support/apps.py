"""Small ASGI applications the tests put behind the middlewares."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from asgi_ws.types import Message, Receive, Scope, Send


@dataclass
class Probe:
    """What the application side saw, for tests to assert on."""

    scopes: list[Scope] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    disconnects: list[Message] = field(default_factory=list)
    send_errors: list[BaseException] = field(default_factory=list)
    calls: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_ended(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)


def describe(scope: Scope) -> dict[str, Any]:
    """What the echo app reports about its scope in its first message."""
    ns = scope.get("asgi_ws") or {}
    user = scope.get("user")
    auth = scope.get("auth")
    return {
        "user": getattr(user, "identity", None) if user is not None else None,
        "authenticated": getattr(user, "is_authenticated", None) if user is not None else None,
        "scopes": list(getattr(auth, "scopes", ()) or ()),
        "subprotocols": list(scope.get("subprotocols") or ()),
        "subprotocol": ns.get("subprotocol"),
        "origin": ns.get("origin"),
    }


def echo_app(probe: Probe | None = None, *, accept_subprotocol: str | None = None) -> Any:
    """A bare ASGI app: accepts, sends a description of its scope, then echoes until disconnect.

    After the disconnect it tries one more send, to observe what a late send does.
    """
    probe = probe if probe is not None else Probe()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise AssertionError(f"echo_app got a {scope['type']} scope")
        probe.calls += 1
        probe.scopes.append(scope)
        try:
            message = await receive()
            assert message["type"] == "websocket.connect", message
            accept: dict[str, Any] = {"type": "websocket.accept"}
            if accept_subprotocol is not None:
                accept["subprotocol"] = accept_subprotocol
            await send(accept)
            await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
            while True:
                message = await receive()
                probe.received.append(message)
                if message["type"] == "websocket.disconnect":
                    probe.disconnects.append(message)
                    break
                await send({**message, "type": "websocket.send"})
            try:
                await send({"type": "websocket.send", "text": "after disconnect"})
            except Exception as exc:
                probe.send_errors.append(exc)
        finally:
            probe.ended.set()

    app.probe = probe  # type: ignore[attr-defined]
    return app


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain HTTP app answering 200 with a fixed body and a custom header."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-probe", b"1")]})
    await send({"type": "http.response.body", "body": b"hello over http"})


def with_blank_page(app: Any) -> Any:
    """Serve an empty HTML page over HTTP beside ``app``'s WebSockets, for browser tests.

    Chromium refuses sockets to loopback addresses from pages like ``about:blank``; a page
    loaded from the same server is what real applications have anyway.
    """

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            body = b"<!doctype html><title>blank</title>"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": body})
        else:
            await app(scope, receive, send)

    return dispatch
