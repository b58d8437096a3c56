"""Every close the library starts lets the application finish: its clean-up runs, nothing logs an ERROR.

A close decided inside ``receive()`` (a rate or size limit, a control message) used to cancel
the application's own task: its next ``await`` raised ``CancelledError``, its clean-up after
the disconnect was lost and uvicorn logged a traceback. Each close path runs here under real
uvicorn, with each of its WebSocket implementations, behind a Starlette endpoint written the
way users write them: catch ``WebSocketDisconnect``, then clean up with awaits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    RateLimitMiddleware,
    ResumeMiddleware,
)
from asgi_ws.auth import SignedTicket
from tests.support.logs import no_server_errors
from tests.support.server import serve

pytestmark = pytest.mark.e2e

HELLO = json.dumps({"$ws": "hello", "v": 1})
FLOOD_FRAME = "x" * 262_144


@dataclass
class Cleanup:
    """What the endpoint's clean-up saw: it must run to its end after every close."""

    codes: list[int] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> int:
        try:
            await asyncio.wait_for(self.done.wait(), 10)
        except asyncio.TimeoutError:
            raise AssertionError("the endpoint's clean-up never ran to its end") from None
        return self.codes[-1]


def endpoint_app(cleanup: Cleanup) -> Starlette:
    """Echoes; ``flood`` makes it send 256 KiB frames until the connection closes."""

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                if text == "flood":
                    while True:
                        await ws.send_text(FLOOD_FRAME)
                await ws.send_text(text)
        except WebSocketDisconnect as exc:
            await asyncio.sleep(0.01)  # clean-up that awaits: a pending cancellation would kill it here
            await asyncio.sleep(0)
            cleanup.codes.append(exc.code)
            cleanup.done.set()

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes; the close code and reason the client got."""
    try:
        async with asyncio.timeout(10):
            async for _ in ws:
                pass
    except TimeoutError:
        raise AssertionError("the server never closed the connection") from None
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


Trigger = Callable[[str], "Any"]


@dataclass
class ClosePath:
    name: str
    wrap: Callable[[Any], Any]
    expected: int  # what the client and the app's receive see
    app_codes: tuple[int, ...] = ()  # what the app may see instead (a send that failed: Starlette says 1006)


def _ticket_app(app: Any) -> Any:
    return AuthMiddleware(HeartbeatMiddleware(app, interval=None), backend=TICKETS)


TICKETS = SignedTicket(secret_keys=["k" * 32], max_age=30)

CLOSE_PATHS = [
    ClosePath("size", lambda app: RateLimitMiddleware(app, max_message_size=100), 1009),
    ClosePath("rate", lambda app: RateLimitMiddleware(app, rate=0.01, burst=2, policy="close"), 1008),
    ClosePath("heartbeat", lambda app: HeartbeatMiddleware(app, interval=0.2, timeout=0.2), 4408),
    ClosePath("idle", lambda app: HeartbeatMiddleware(app, interval=None, idle_timeout=0.3), 4410),
    ClosePath(
        "slow_consumer",
        lambda app: BackpressureMiddleware(app, max_messages=2, policy="close"),
        1013,
        app_codes=(1006,),
    ),
    ClosePath("credentials_expired", _ticket_app, 4401),
]


async def open_client(url: str, *, slow: bool = False) -> ClientConnection:
    sock = None
    if slow:  # a small receive buffer: the server must stop writing soon after the client stops reading
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return await connect(url, open_timeout=10, ping_interval=None, compression=None, max_size=None, sock=sock)


async def trigger(path: ClosePath, ws: ClientConnection) -> None:
    if path.name == "size":
        await ws.send("y" * 200)
    elif path.name == "rate":
        for i in range(5):
            await ws.send(f"m{i}")
    elif path.name == "heartbeat":
        await ws.send(HELLO)  # opted in, then never answers the pings
    elif path.name == "slow_consumer":
        assert ws.transport is not None
        ws.transport.pause_reading()  # the client stops reading while the app floods
        await ws.send("flood")
        await asyncio.sleep(0.5)
        ws.transport.resume_reading()  # read again, to see the close frame


@pytest.mark.parametrize("path", CLOSE_PATHS, ids=lambda p: p.name)
async def test_a_library_close_lets_the_app_clean_up(path: ClosePath, ws_impl: str) -> None:
    cleanup = Cleanup()
    app = path.wrap(endpoint_app(cleanup))
    query = ""
    if path.name == "credentials_expired":
        query = "?ticket=" + TICKETS.issue("ada", expires_at=time.time() + 0.5)
    with no_server_errors():
        async with serve(app, ws=ws_impl, log_config=None, log_level="info") as server:
            ws = await open_client(server.ws_url("/ws" + query), slow=path.name == "slow_consumer")
            await trigger(path, ws)
            code, _ = await closed_with(ws)
            assert code == path.expected
            assert await cleanup.wait() in (path.expected, *path.app_codes)


async def test_a_resume_takeover_lets_the_old_connections_app_clean_up(ws_impl: str) -> None:
    cleanup = Cleanup()
    app = ResumeMiddleware(HeartbeatMiddleware(endpoint_app(cleanup), interval=None), secret_keys=["r" * 32])
    with no_server_errors():
        async with serve(app, ws=ws_impl, log_config=None, log_level="info") as server:
            first = await open_client(server.ws_url("/ws?ws_resume=new"))
            session = json.loads(await asyncio.wait_for(first.recv(), 5))
            assert session["$ws"] == "session"
            url = server.ws_url(f"/ws?ws_resume={session['token']}&ws_seq=0")
            async with await open_client(url) as second:
                resumed = json.loads(await asyncio.wait_for(second.recv(), 5))
                assert resumed["$ws"] == "resumed"
                assert (await closed_with(first))[0] == 4409
                assert await cleanup.wait() == 4409


async def test_a_server_shutdown_lets_the_app_clean_up(ws_impl: str) -> None:
    cleanup = Cleanup()
    app = HeartbeatMiddleware(endpoint_app(cleanup), interval=20)
    with no_server_errors():
        async with serve(app, ws=ws_impl, log_config=None, log_level="info", graceful=True) as server:
            ws = await open_client(server.ws_url("/ws"))
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
        assert (await closed_with(ws))[0] == 1012  # uvicorn's own shutdown close
        assert await cleanup.wait() == 1012
