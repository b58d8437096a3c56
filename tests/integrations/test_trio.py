"""What runs on trio (Starlette's ``TestClient(backend="trio")``, an ASGI server on trio).

The handshake middlewares work there, AuthMiddleware's deadline included. Everything built on
the connection shell (session middlewares, PubSubApp, credentials that expire) needs asyncio
and says so: one ``ConfigurationError`` per connection, naming trio.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    ConfigurationError,
    ConnectionLimitMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    PubSubApp,
    RateLimitMiddleware,
    ResumeMiddleware,
    SubprotocolMiddleware,
)
from asgi_ws.auth import BearerToken, Identity, User

ORIGIN = "https://app.example.com"
NEEDS_ASYNCIO = "need asyncio; this connection runs on trio"


async def hello(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(
        {"user": websocket.user.identity, "subprotocol": websocket.scope["asgi_ws"]["subprotocol"]}
    )
    await websocket.close()


async def verify(token: str) -> Identity | None:
    if token == "slow":
        await trio.sleep(10)
    if token == "expiring":
        return Identity(user=User("eve"), expires_at=time.time() + 60)
    return Identity(user=User(token)) if token in ("alice", "bob") else None


def handshake_stack(**auth: Any) -> list[Middleware]:
    return [
        Middleware(ConnectionLimitMiddleware, max_connections=10, max_per_ip=5),
        Middleware(OriginMiddleware, allow_origins=[ORIGIN]),
        Middleware(AuthMiddleware, backend=BearerToken(verify), **auth),
        Middleware(SubprotocolMiddleware, supported=["chat.v1"]),
    ]


def connect(client: TestClient, path: str = "/ws", token: str = "alice", origin: str = ORIGIN) -> Any:
    headers = {"origin": origin, "authorization": f"Bearer {token}"}
    return client.websocket_connect(path, headers=headers, subprotocols=["chat.v1"])


def status_of(client: TestClient, **kwargs: Any) -> int:
    with pytest.raises(WebSocketDenialResponse) as refused, connect(client, **kwargs):
        pass
    return refused.value.status_code


def test_the_handshake_middlewares_accept_and_refuse_on_trio() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", hello)], middleware=handshake_stack())
    with TestClient(app, backend="trio") as client:
        with connect(client) as ws:
            assert ws.receive_json() == {"user": "alice", "subprotocol": "chat.v1"}
        assert status_of(client, origin="https://evil.example") == 403
        assert status_of(client, token="mallory") == 401


def test_auth_backend_timeout_is_kept_on_trio() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", hello)], middleware=handshake_stack(backend_timeout=0.2))
    with TestClient(app, backend="trio") as client:
        started = time.monotonic()
        assert status_of(client, token="slow") == 503
        assert time.monotonic() - started < 5
        with connect(client, token="bob") as ws:  # the next handshake is served as usual
            assert ws.receive_json()["user"] == "bob"


SESSION_FEATURES = {
    "HeartbeatMiddleware": ([Middleware(HeartbeatMiddleware)], "/ws", "alice"),
    "BackpressureMiddleware": ([Middleware(BackpressureMiddleware)], "/ws", "alice"),
    "RateLimitMiddleware": ([Middleware(RateLimitMiddleware, rate=10)], "/ws", "alice"),
    "ResumeMiddleware": ([Middleware(ResumeMiddleware, secret_keys=["k" * 32])], "/ws?ws_resume=new", "alice"),
    "PubSubApp": ([], "/pubsub", "alice"),
    "credentials that expire": ([], "/ws", "expiring"),
}


@pytest.mark.parametrize("feature", SESSION_FEATURES)
def test_live_connection_features_say_they_need_asyncio_once_per_connection(feature: str) -> None:
    inner, path, token = SESSION_FEATURES[feature]
    routes = [WebSocketRoute("/ws", hello), WebSocketRoute("/pubsub", PubSubApp())]
    app = Starlette(routes=routes, middleware=handshake_stack() + inner)
    with TestClient(app, backend="trio") as client:
        for _ in range(2):  # every connection, the same error: nothing left half-made by the first
            with pytest.raises(ConfigurationError, match=NEEDS_ASYNCIO), connect(client, path, token=token):
                pass
    with TestClient(app) as client, connect(client, path, token=token) as ws:
        assert ws.accepted_subprotocol == "chat.v1"  # on asyncio, the same app serves
