"""PubSubApp inside a Starlette or FastAPI app, as docs/pubsub.md shows it, under a real uvicorn.

The framework's lifespan starts and closes the rooms (``lifespan=pubsub.lifespan``), the
endpoint answers at its path without a trailing slash (a ``WebSocketRoute``, not a ``Mount``),
and ``BrowserClientApp`` serves the browser client.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from asgi_ws import BackpressureMiddleware, HeartbeatMiddleware, OriginMiddleware, PubSubApp, Rooms
from asgi_ws.brokers import MemoryBroker
from asgi_ws.brokers.base import Deliver, OnEvent
from asgi_ws.static import BrowserClientApp, read
from tests.support.clients import opened, refusal
from tests.support.server import serve

ORIGIN = "https://app.example.com"


class RecordingBroker(MemoryBroker):
    """The memory broker, writing down when the rooms connect and close it."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None:
        self.events.append("broker connected")
        await super().connect(deliver, on_event)

    async def close(self) -> None:
        self.events.append("broker closed")
        await super().close()


def realtime(pubsub: PubSubApp) -> Any:
    return OriginMiddleware(HeartbeatMiddleware(BackpressureMiddleware(pubsub)), allow_origins=[ORIGIN])


async def subscribe_and_receive(url: str, rooms: Rooms) -> None:
    async with opened(url, origin=ORIGIN, ping_interval=None) as conn:
        await conn.send(json.dumps({"$ws": "subscribe", "channel": "news"}))
        assert json.loads(await conn.recv())["$ws"] == "subscribed"
        await rooms.publish("news", {"headline": "hi"})
        assert json.loads(await conn.recv()) == {"channel": "news", "data": {"headline": "hi"}}


@pytest.mark.parametrize("framework", [FastAPI, Starlette])
async def test_the_frameworks_lifespan_starts_and_closes_the_rooms_and_the_path_needs_no_slash(
    framework: Any,
) -> None:
    events: list[str] = []
    rooms = Rooms(RecordingBroker(events))
    pubsub = PubSubApp(rooms)
    routes = [WebSocketRoute("/realtime", realtime(pubsub)), Route("/asgi-ws.js", BrowserClientApp())]
    app = framework(routes=routes, lifespan=pubsub.lifespan)
    async with serve(app, lifespan="on", graceful=True) as server:
        assert events == ["broker connected"]  # at start-up, before any connection
        await subscribe_and_receive(server.ws_url("/realtime"), rooms)
        async with httpx.AsyncClient() as client:
            script = await client.get(server.http_url("/asgi-ws.js"))
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert script.content == read("asgi-ws.js")
    assert events == ["broker connected", "broker closed"]


async def test_pubsub_lifespan_composes_with_the_apps_own() -> None:
    events: list[str] = []
    pubsub = PubSubApp(Rooms(RecordingBroker(events)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with pubsub.lifespan(app):
            events.append("app started")
            yield
            events.append("app stopping")

    app = Starlette(routes=[WebSocketRoute("/realtime", realtime(pubsub))], lifespan=lifespan)
    async with serve(app, lifespan="on", graceful=True) as server:
        await subscribe_and_receive(server.ws_url("/realtime"), pubsub.rooms)
    assert events == ["broker connected", "app started", "app stopping", "broker closed"]


async def test_a_mount_answers_only_below_its_path() -> None:
    """Why the docs route PubSubApp with a WebSocketRoute: Starlette redirects an HTTP request for
    ``/realtime`` to ``/realtime/``, but a WebSocket there gets the router's bare 403."""
    pubsub = PubSubApp()
    app = Starlette(routes=[Mount("/realtime", realtime(pubsub))], lifespan=pubsub.lifespan)
    async with serve(app, lifespan="on") as server:
        refused = await refusal(server.ws_url("/realtime"), origin=ORIGIN)
        assert (refused.status, refused.body) == (403, "")
        await subscribe_and_receive(server.ws_url("/realtime/"), pubsub.rooms)


async def test_browser_client_app_revalidates_and_answers_only_get_and_head() -> None:
    client_app = BrowserClientApp()
    async with serve(Starlette(routes=[Route("/static/asgi-ws.js", client_app)])) as server:
        url = server.http_url("/static/asgi-ws.js")
        async with httpx.AsyncClient() as client:
            first = await client.get(url)
            again = await client.get(url, headers={"if-none-match": first.headers["etag"]})
            head = await client.head(url)
            post = await client.post(url)
    assert (first.status_code, first.headers["cache-control"], first.content) == (200, "no-cache", client_app.body)
    assert "globalThis.AsgiWs = AsgiWs" in first.text
    assert (again.status_code, again.content) == (304, b"")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(client_app.body)))
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")


async def test_browser_client_app_alone_is_a_whole_asgi_app() -> None:
    async with serve(BrowserClientApp(), lifespan="on", graceful=True) as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.http_url("/any/path.js"))).status_code == 200
        refused = await refusal(server.ws_url("/ws"))
    assert (refused.status, refused.body) == (404, "this path serves the browser client over HTTP")
