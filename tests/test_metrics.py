from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from asgi_ws import BackpressureMiddleware, HeartbeatMiddleware, RateLimitMiddleware, Rooms, connection_of
from asgi_ws.metrics import AsgiWsCollector
from tests.support.apps import echo_app
from tests.support.session import Harness


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
