"""The application ``tests/test_server_logs.py`` serves with ``uvicorn tests.support.log_apps:app``.

Nothing here touches logging: the point is what uvicorn's *default* configuration makes of
asgi_ws's refusals, closes and query-carried credentials. One path per case:

- ``/ws``: Origin → Auth (``?ticket=`` signed tickets; ``?token=`` whose backend raises: 503)
  → one connection per user → Subprotocol ``chat.v1`` → Heartbeat → echo.
- ``/cap-ip``, ``/cap``: one connection per address (429), one in all (503).
- ``/close/<name>``: each library close of ``tests/test_close_paths.CLOSE_PATHS``.
- ``/resume``: ResumeMiddleware (``?ws_resume=``), for the 4409 takeover.
- ``GET /drain``: starts a drain; every later handshake is refused with 503.
"""

from __future__ import annotations

from typing import Any

from asgi_ws import (
    AuthMiddleware,
    ConnectionLimitMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    ResumeMiddleware,
    SubprotocolMiddleware,
)
from asgi_ws.auth import QueryToken
from asgi_ws.drain import drain
from asgi_ws.types import Receive, Scope, Send
from tests.support.apps import echo_app
from tests.test_close_paths import CLOSE_PATHS, TICKETS, Cleanup, endpoint_app

ORIGIN = "https://app.example.com"
SUBPROTOCOL = "chat.v1"
RESUME_KEY = "r" * 32


def _backend_down(token: str) -> Any:
    raise ConnectionRefusedError(f"database down while checking {token}")  # the message is never logged


def _handshake_stack() -> Any:
    inner = SubprotocolMiddleware(HeartbeatMiddleware(echo_app(), interval=None), supported=[SUBPROTOCOL])
    auth = AuthMiddleware(
        ConnectionLimitMiddleware(inner, max_per_user=1),
        backend=[TICKETS, QueryToken(_backend_down)],
        backend_timeout=2,
    )
    return OriginMiddleware(auth, allow_origins=[ORIGIN])


def _session(app: Any) -> Any:
    return HeartbeatMiddleware(app, interval=None)


ROUTES: dict[str, Any] = {
    "/ws": _handshake_stack(),
    "/cap-ip": ConnectionLimitMiddleware(_session(echo_app()), max_per_ip=1),
    "/cap": ConnectionLimitMiddleware(_session(echo_app()), max_connections=1),
    "/resume": ResumeMiddleware(_session(endpoint_app(Cleanup())), secret_keys=[RESUME_KEY]),
    **{f"/close/{path.name}": path.wrap(endpoint_app(Cleanup())) for path in CLOSE_PATHS},
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope.get("path", "")
    if scope["type"] == "websocket":
        route = ROUTES[path]
        if path.startswith("/close/") or path == "/resume":
            scope = {**scope, "path": "/ws"}  # the Starlette endpoint's route
        await route(scope, receive, send)
    elif scope["type"] == "http" and path == "/drain":
        report = await drain(2.0)
        body = f"drained {report.connections}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
