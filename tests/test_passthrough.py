"""Non-WebSocket scopes pass through every handshake middleware untouched."""

from __future__ import annotations

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_ws import AuthMiddleware, OriginMiddleware, SubprotocolMiddleware
from asgi_ws.auth import BearerToken
from asgi_ws.types import Message, Receive, Scope, Send
from tests.support.apps import http_app
from tests.support.server import serve


def full_stack(app):  # type: ignore[no-untyped-def]
    return OriginMiddleware(
        AuthMiddleware(SubprotocolMiddleware(app, supported=["chat"]), backend=BearerToken(lambda t: None)),
        allow_origins=["https://only.example.com"],
    )


@pytest.mark.parametrize("scope_type", ["http", "lifespan"])
async def test_same_scope_receive_and_send_objects_reach_the_app(scope_type: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    scope: Scope = {"type": scope_type, "headers": [(b"origin", b"https://evil.example")], "path": "/"}
    snapshot = repr(scope)

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    await full_stack(inner)(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert repr(scope) == snapshot


async def test_lifespan_messages_flow_both_ways() -> None:
    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    comm = ApplicationCommunicator(full_stack(lifespan_app), {"type": "lifespan", "asgi": {"version": "3.0"}})
    await comm.send_input({"type": "lifespan.startup"})
    assert await comm.receive_output(1) == {"type": "lifespan.startup.complete"}
    await comm.send_input({"type": "lifespan.shutdown"})
    assert await comm.receive_output(1) == {"type": "lifespan.shutdown.complete"}


async def test_http_response_is_byte_for_byte_the_same_through_uvicorn() -> None:
    responses = []
    for app in (http_app, full_stack(http_app)):
        async with serve(app) as server, httpx.AsyncClient() as client:
            response = await client.get(server.http_url("/x?y=1"), headers={"Origin": "https://evil.example"})
            responses.append((response.status_code, response.content, response.headers.get("x-probe")))
    assert responses[0] == responses[1] == (200, b"hello over http", "1")
