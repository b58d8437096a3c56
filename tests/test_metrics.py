from __future__ import annotations

import importlib

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asgi_ws import (
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    Rooms,
    connection_of,
    deny,
)
from asgi_ws.metrics import AsgiWsCollector
from asgi_ws.types import Message
from tests.support.apps import echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.session import Harness
from tests.test_outbound_batching import burst, burst_app

deny_module = importlib.import_module("asgi_ws.deny")  # the attribute asgi_ws.deny is the function


async def test_the_collector_exports_what_the_library_counts() -> None:
    backpressure = BackpressureMiddleware(echo_app(), max_messages=1, policy="drop_newest")
    ratelimit = RateLimitMiddleware(HeartbeatMiddleware(backpressure, interval=0.05, timeout=0.05), rate=0.01, burst=1)
    rooms = Rooms()
    registry = CollectorRegistry()
    registry.register(
        AsgiWsCollector(rooms=[rooms], backpressure=[backpressure], ratelimit=[ratelimit], names=["chat"])
    )
    async with rooms, Harness(ratelimit) as ws:
        await ws.next_text()
        ws.send_text("one")
        ws.send_text("two")  # over the rate: dropped
        assert await ws.next_text() == "one"
        await rooms.join("lobby", connection_of(ws.scope))
        await rooms.publish("lobby", "x")
        assert await ws.next_text() == "x"
        text = generate_latest(registry).decode()
    for line in [
        'asgi_ws_ratelimit_dropped_total{middleware="chat"} 1.0',
        'asgi_ws_outbound_dropped_total{middleware="chat"} 0.0',
        'asgi_ws_outbound_sent_total{middleware="chat"}',
        'asgi_ws_rooms_published_total{namespace="asgi_ws"} 1.0',
        'asgi_ws_rooms_delivered_total{namespace="asgi_ws"} 1.0',
        "asgi_ws_connections_open",
    ]:
        assert line in text, line


async def test_refused_handshakes_are_counted_by_middleware_status_and_a_bounded_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deny_module, "REFUSED", {})
    monkeypatch.setattr("asgi_ws.metrics.REFUSED", deny_module.REFUSED)
    monkeypatch.setattr(deny_module, "MAX_REFUSAL_KINDS", 3)
    registry = CollectorRegistry()
    registry.register(AsgiWsCollector())
    mw = OriginMiddleware(echo_app(), allow_origins=["https://ok.example"])
    for _ in range(2):
        await handshake(mw, ws_scope(headers=[("origin", "https://evil.example")]))
    for reason in ("a", "b", "c", "d"):  # an application's own reasons: past 3 kinds, one "other"
        await deny(ws_scope(), _discard, 403, reason, refused_by="app")
    text = generate_latest(registry).decode()
    for line in [
        'asgi_ws_handshakes_refused_total{reason="origin not allowed",refused_by="OriginMiddleware",status="403"} 2.0',
        'asgi_ws_handshakes_refused_total{reason="a",refused_by="app",status="403"} 1.0',
        'asgi_ws_handshakes_refused_total{reason="b",refused_by="app",status="403"} 1.0',
        'asgi_ws_handshakes_refused_total{reason="other",refused_by="app",status="403"} 2.0',
    ]:
        assert line in text, line
    assert text.count("asgi_ws_handshakes_refused_total{") == 4


async def _discard(message: Message) -> None:
    pass


async def test_batch_frames_are_exported() -> None:
    backpressure = BackpressureMiddleware(burst_app())
    registry = CollectorRegistry()
    registry.register(AsgiWsCollector(backpressure=[backpressure], names=["feed"]))
    async with Harness(backpressure) as ws:
        ws.send_json({"$ws": "hello", "v": 1, "batch": True})
        assert (await ws.next_json())["$ws"] == "welcome"
        assert await burst(ws) == ["m0", ["m1", "m2", "m3", "m4"]]
        text = generate_latest(registry).decode()
    assert 'asgi_ws_outbound_batches_total{middleware="feed"} 1.0' in text
    assert 'asgi_ws_outbound_sent_total{middleware="feed"} 5.0' in text
