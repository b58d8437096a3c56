"""``asgi-ws serve``, the main job: the page, the client script, the protected endpoint."""

from __future__ import annotations

import json

import httpx

from asgi_ws.cli import build_app, parse_args
from tests.support.clients import opened, refusal
from tests.support.procs import asgi_ws_serve
from tests.support.server import serve


def test_defaults() -> None:
    args = parse_args(["serve"])
    assert (args.broker, args.host, args.port, args.path) == ("memory://?history=1000", "127.0.0.1", 8000, "/ws")
    assert (args.resume_window, args.session_store) == (120.0, "memory://")
    assert parse_args(["serve", "--allow-origin", "https://a.io", "--allow-origin", "https://b.io"]).allow_origin == [
        "https://a.io",
        "https://b.io",
    ]


async def test_routes_origin_and_pubsub_in_process() -> None:
    async with serve(build_app(), lifespan="on") as server:
        async with httpx.AsyncClient() as client:
            page = await client.get(server.http_url("/"))
            script = await client.get(server.http_url("/asgi-ws.js"))
            missing = await client.get(server.http_url("/nope"))
        assert page.status_code == 200 and "asgi_ws pub/sub demo" in page.text
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "class AsgiWs" in script.text and missing.status_code == 404
        same = f"http://127.0.0.1:{server.port}"
        async with opened(server.ws_url("/ws"), origin=same, ping_interval=None) as conn:
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            features = json.loads(await conn.recv())["features"]
            assert set(features) == {"heartbeat", "pubsub"}
        assert (await refusal(server.ws_url("/ws"), origin="https://evil.example")).status == 403
        wrong = await refusal(server.ws_url("/elsewhere"), origin=same)
        assert (wrong.status, wrong.body) == (404, "no WebSocket endpoint here; try /ws")


async def test_metrics_endpoint() -> None:
    async with serve(build_app(metrics=True), lifespan="on") as server:
        async with opened(server.ws_url("/ws"), origin=f"http://127.0.0.1:{server.port}", ping_interval=None) as conn:
            await conn.send(json.dumps({"$ws": "subscribe", "channel": "c"}))
            await conn.recv()
            async with httpx.AsyncClient() as client:
                text = (await client.get(server.http_url("/metrics"))).text
        assert 'asgi_ws_rooms_local_members{namespace="asgi_ws"} 1.0' in text
        assert "process_resident_memory_bytes" in text


async def test_no_demo_serves_no_page() -> None:
    async with serve(build_app(demo=False)) as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.http_url("/"))).status_code == 404


async def test_the_command_serves_the_demo_and_the_endpoint() -> None:
    with asgi_ws_serve("--allow-origin", "https://app.example.com") as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        async with (
            opened(server.ws_url("/ws"), origin="https://app.example.com", ping_interval=None) as a,
            opened(server.ws_url("/ws"), origin="https://app.example.com", ping_interval=None) as b,
        ):
            for conn in (a, b):
                await conn.send(json.dumps({"$ws": "subscribe", "channel": "lobby"}))
                assert json.loads(await conn.recv())["$ws"] == "subscribed"
            await a.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": "from the cli"}))
            assert json.loads(await b.recv()) == {"channel": "lobby", "data": "from the cli"}
