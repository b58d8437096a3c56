"""The asgi_ws demo: a FastAPI app whose WebSocket passes the handshake and session middlewares.

Run it from a checkout with ``scripts/bootstrap demo && .venv/bin/python -m examples.fastapi_app``
(the ``demo`` extra adds FastAPI to the server's packages) and open http://127.0.0.1:8000/.
The page asks ``POST /ticket`` for a signed ticket, opens ``/ws?ticket=...`` offering the
``chat.v2`` subprotocol, says ``hello`` in the control protocol and answers the server's
heartbeat pings, and shows what each middleware decided.
Buttons open sockets that each middleware refuses, and flood the server past its rate limit.

Configuration (environment variables):
    ASGI_WS_SECRET_KEYS    comma-separated signing keys, oldest first (default: a random key)
    ASGI_WS_ALLOW_ORIGINS  comma-separated extra allowed origins (same-origin is always allowed)
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    SubprotocolMiddleware,
    queue_stats,
)
from asgi_ws.auth import SignedTicket

SECRET_KEYS = [k for k in os.environ.get("ASGI_WS_SECRET_KEYS", "").split(",") if k] or [secrets.token_urlsafe(32)]
EXTRA_ORIGINS = [o for o in os.environ.get("ASGI_WS_ALLOW_ORIGINS", "").split(",") if o]

tickets = SignedTicket(SECRET_KEYS, max_age=30)
app = FastAPI(title="asgi_ws demo")


class TicketRequest(BaseModel):
    name: str
    lifetime: float | None = None  # seconds the opened connection may live; None: unlimited


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return (Path(__file__).parent / "index.html").read_text()


@app.post("/ticket")
async def issue_ticket(request: TicketRequest) -> dict[str, str]:
    """Issue a 30-second ticket. A real app authenticates this request (session cookie...)."""
    expires_at = time.time() + request.lifetime if request.lifetime else None
    return {"ticket": tickets.issue(request.name[:64] or "guest", scopes=["chat"], expires_at=expires_at)}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    ns = websocket.scope["asgi_ws"]
    await websocket.send_json(
        {
            "event": "welcome",
            "user": websocket.user.identity,
            "scopes": list(websocket.auth.scopes),
            "origin": ns["origin"],
            "subprotocol": ns["subprotocol"],
            "expires_at": websocket.auth.expires_at,
        }
    )
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json(
                {"event": "echo", "from": websocket.user.identity, "text": text, "queue": queue_stats(websocket.scope)}
            )
    except WebSocketDisconnect:
        pass


# Added last = outermost: Origin is checked first, then auth, then the subprotocol; the
# session middlewares run inside them, on accepted connections only.
app.add_middleware(RateLimitMiddleware, rate=5, burst=10, policy="drop", max_message_size=64 * 1024)
app.add_middleware(BackpressureMiddleware, max_messages=500, policy="drop_oldest")
app.add_middleware(HeartbeatMiddleware, interval=10, timeout=10, idle_timeout=600)
app.add_middleware(SubprotocolMiddleware, supported=["chat.v2", "chat.v1"])
app.add_middleware(AuthMiddleware, backend=tickets)
app.add_middleware(OriginMiddleware, allow_same_origin=True, allow_origins=EXTRA_ORIGINS)
