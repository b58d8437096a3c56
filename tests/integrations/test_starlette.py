"""The middlewares added to Starlette and FastAPI apps with ``add_middleware``."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws import AuthMiddleware, OriginMiddleware, SubprotocolMiddleware
from asgi_ws.auth import BearerToken, Identity, User
from tests.support.clients import opened, refusal
from tests.support.server import serve

ORIGIN = "https://app.example.com"
TOKENS = {"alice": ("chat",), "bob": ()}
disconnect_codes: list[int] = []


def verify(token: str) -> Identity | None:
    if token.startswith("short-"):
        return Identity(user=User(token[6:]), scopes=("chat",), expires_at=time.time() + 0.5)
    return Identity(user=User(token), scopes=TOKENS[token]) if token in TOKENS else None


@requires("chat")
async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(
        {
            "user": websocket.user.identity,
            "scopes": list(websocket.auth.scopes),
            "subprotocol": websocket.scope["asgi_ws"]["subprotocol"],
        }
    )
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect as exc:
        disconnect_codes.append(exc.code)


def add_stack(app: Starlette) -> Starlette:
    app.add_middleware(SubprotocolMiddleware, supported=["chat.v2", "chat.v1"])
    app.add_middleware(AuthMiddleware, backend=BearerToken(verify))
    app.add_middleware(OriginMiddleware, allow_origins=[ORIGIN])
    return app


def starlette_app() -> Starlette:
    return add_stack(Starlette(routes=[WebSocketRoute("/ws", chat)]))


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await chat(websocket)

    add_stack(app)
    return app


def headers(token: str, origin: str = ORIGIN) -> dict[str, str]:
    return {"origin": origin, **bearer(token)}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("factory", [starlette_app, fastapi_app])
def test_test_client_sees_statuses_and_the_identity(factory) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(factory())
    with client.websocket_connect("/ws", headers=headers("alice"), subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.accepted_subprotocol == "chat.v2"
        assert ws.receive_json() == {"user": "alice", "scopes": ["chat"], "subprotocol": "chat.v2"}
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    for hdrs, protocols, status in [
        (headers("alice", origin="https://evil.example"), ["chat.v2"], 403),
        (headers("mallory"), ["chat.v2"], 401),
        (headers("alice"), ["mqtt"], 400),
    ]:
        with pytest.raises(WebSocketDenialResponse) as info:
            with client.websocket_connect("/ws", headers=hdrs, subprotocols=protocols):
                pass
        assert info.value.status_code == status
    # Starlette's own @requires refuses bob (no "chat" scope) with its close-before-accept.
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers=headers("bob"), subprotocols=["chat.v2"]):
            pass


@pytest.mark.parametrize("factory", [starlette_app, fastapi_app])
async def test_through_uvicorn_with_expiry(factory, ws_impl: str) -> None:  # type: ignore[no-untyped-def]
    disconnect_codes.clear()
    async with serve(factory(), ws=ws_impl) as server:
        url = server.ws_url("/ws")
        async with opened(url, origin=ORIGIN, additional_headers=bearer("alice"), subprotocols=["chat.v2"]) as conn:
            assert (await conn.recv()).startswith('{"user":"alice"')
        assert (await refusal(url, origin="https://evil.example", subprotocols=["chat.v2"])).status == 403
        assert (
            await refusal(url, origin=ORIGIN, additional_headers=bearer("x"), subprotocols=["chat.v2"])
        ).status == 401
        async with opened(
            url, origin=ORIGIN, additional_headers=bearer("short-carol"), subprotocols=["chat.v2"]
        ) as conn:
            await conn.recv()
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert (conn.close_code, conn.close_reason) == (4401, "credentials expired")
        for _ in range(100):
            if 4401 in disconnect_codes:
                break
            await asyncio.sleep(0.05)
    assert disconnect_codes == [1000, 4401]  # alice's normal close, then carol's expiry
