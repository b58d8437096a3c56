"""The session middlewares together, and with the handshake middlewares in one stack."""

from __future__ import annotations

import asyncio
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    SubprotocolMiddleware,
    queue_stats,
)
from asgi_ws.auth import BearerToken, Identity, User
from asgi_ws.protocol import PREFIX
from tests.support.apps import Probe, echo_app
from tests.support.clients import opened, refusal
from tests.support.server import serve
from tests.support.session import Harness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
control_like = st.builds(
    lambda op, fields: json.dumps({"$ws": op, **fields}),
    st.sampled_from(["hello", "ping", "pong", "nope", "welcome", "error", ""]) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(["v", "id", "x"]), json_values, max_size=2),
)
frames = st.lists(
    st.one_of(
        st.text(max_size=40).map(lambda t: ("text", t)),
        st.binary(max_size=40).map(lambda b: ("bytes", b)),
        st.text(max_size=40).map(lambda t: ("text", PREFIX + t)),
        control_like.map(lambda t: ("text", t)),
    ),
    max_size=25,
)


def session_stack(app):  # type: ignore[no-untyped-def]
    return RateLimitMiddleware(
        BackpressureMiddleware(HeartbeatMiddleware(app, interval=30, timeout=30), max_messages=100),
        rate=10_000,
        burst=10_000,
        max_message_size=100_000,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_any_frames_in_no_exception_out_and_the_app_sees_exactly_its_own(sequence: list[tuple[str, object]]) -> None:
    async def run() -> None:
        probe = Probe()
        async with Harness(session_stack(echo_app(probe))) as ws:
            await ws.next_text()
            for kind, value in sequence:
                ws.send_text(value) if kind == "text" else ws.send_bytes(value)  # type: ignore[arg-type]
            expected = [(k, v) for k, v in sequence if not (k == "text" and str(v).startswith(PREFIX))]
            for kind, value in expected:  # the app echoes its messages, in order, among control replies
                while True:
                    message = await ws.next()
                    if message.get("text", "").startswith(PREFIX):
                        reply = json.loads(message["text"])
                        assert reply["$ws"] in ("welcome", "pong", "error")
                        continue
                    assert message.get(kind) == value
                    break
            ws.disconnect()
            await asyncio.wait_for(ws.task, 2)  # type: ignore[arg-type]
            assert ws.task is not None and ws.task.exception() is None
        app_got = [m.get("text", m.get("bytes")) for m in probe.received if m["type"] == "websocket.receive"]
        assert app_got == [v for _, v in expected]

    asyncio.run(run())


# -- everything in one Starlette app, through uvicorn -------------------------------------------

ORIGIN = "https://app.example.com"
codes: list[int] = []


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(
        {"user": websocket.user.identity, "subprotocol": websocket.scope["asgi_ws"]["subprotocol"]}
    )
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"echo": text, "queue": queue_stats(websocket.scope)})
    except WebSocketDisconnect as exc:
        codes.append(exc.code)


def verify(token: str) -> Identity | None:
    lifetime = 0.8 if token == "short" else 3600
    return Identity(user=User(token), expires_at=time.time() + lifetime) if token in ("alice", "short") else None


def full_app() -> Starlette:
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(RateLimitMiddleware, rate=100, burst=100, max_message_size=65536)
    app.add_middleware(BackpressureMiddleware, max_messages=100, policy="drop_oldest")
    app.add_middleware(HeartbeatMiddleware, interval=0.3, timeout=0.5)
    app.add_middleware(SubprotocolMiddleware, supported=["chat.v2"])
    app.add_middleware(AuthMiddleware, backend=BearerToken(verify))
    app.add_middleware(OriginMiddleware, allow_origins=[ORIGIN])
    return app


async def test_handshake_and_session_middlewares_compose(ws_impl: str) -> None:
    codes.clear()
    async with serve(full_app(), ws=ws_impl) as server:
        url = server.ws_url("/ws")
        kwargs = {"origin": ORIGIN, "subprotocols": ["chat.v2"], "ping_interval": None}
        assert (await refusal(url, **kwargs)).status == 401
        assert (await refusal(url, **{**kwargs, "origin": "https://evil.example"})).status == 403
        async with opened(url, additional_headers={"Authorization": "Bearer alice"}, **kwargs) as conn:
            assert json.loads(await conn.recv()) == {"user": "alice", "subprotocol": "chat.v2"}
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            welcome = json.loads(await conn.recv())
            assert welcome == {
                "$ws": "welcome",
                "v": 1,
                "features": {
                    "heartbeat": {"interval": 0.3, "timeout": 0.5},
                    "batch": {"max_messages": 256, "max_bytes": 65_536},  # BackpressureMiddleware offers batches
                },
            }
            await conn.send("hi")
            reply = json.loads(await conn.recv())
            assert reply["echo"] == "hi" and reply["queue"]["dropped"] == 0
            ping = json.loads(await asyncio.wait_for(conn.recv(), 5))
            assert ping["$ws"] == "ping"
            await conn.send(json.dumps({"$ws": "pong", "id": ping["id"]}))
        # Credentials still expire on the live connection, heartbeat or not.
        async with opened(url, additional_headers={"Authorization": "Bearer short"}, **kwargs) as conn:
            await conn.recv()
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert conn.close_code == 4401
        for _ in range(100):
            if 4401 in codes:
                break
            await asyncio.sleep(0.05)
    assert codes == [1000, 4401]
