from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed

from asgi_ws import ConfigurationError, RateLimitMiddleware
from asgi_ws.middleware.ratelimit import Gcra, MemoryRateLimitStore, _InboundLimiter
from tests.support.apps import Probe, echo_app
from tests.support.clients import opened
from tests.support.server import serve
from tests.support.session import Harness


def received_texts(probe: Probe) -> list[str]:
    return [m["text"] for m in probe.received if m.get("text") is not None]


# -- the rate decision --------------------------------------------------------------------


def test_gcra_allows_a_burst_then_the_rate() -> None:
    gcra = Gcra(rate=2, burst=3)
    tat, decisions = 0.0, []
    for _ in range(4):
        tat, wait = gcra.take(tat, 0.0)
        decisions.append(wait == 0)
    assert decisions == [True, True, True, False]
    assert gcra.take(tat, 0.4)[1] > 0 and gcra.take(tat, 0.5)[1] == 0  # one message every 0.5 s
    tat, _ = gcra.take(tat, 100.0)  # a long pause refills at most the burst
    for _ in range(2):
        tat, wait = gcra.take(tat, 100.0)
        assert wait == 0
    assert gcra.take(tat, 100.0)[1] > 0


def test_gcra_reserve_takes_the_slot_and_says_how_long_to_wait() -> None:
    gcra = Gcra(rate=10, burst=1)
    tat, wait = gcra.take(0.0, 0.0, reserve=True)
    assert wait == 0
    tat, wait = gcra.take(tat, 0.0, reserve=True)
    assert wait == pytest.approx(0.1)
    tat, wait = gcra.take(tat, 0.0, reserve=True)
    assert wait == pytest.approx(0.2)
    refused_tat, wait = Gcra(rate=10, burst=1).take(0.5, 0.0)
    assert refused_tat == 0.5 and wait == pytest.approx(0.5)  # refused without reserve: unchanged


@given(
    st.floats(0.5, 500),
    st.integers(1, 20),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=60),
    st.sampled_from(["drop", "delay"]),
)
def test_the_connections_inlined_check_decides_like_gcra(
    rate: float, burst: int, gaps: list[float], policy: str
) -> None:
    mw = RateLimitMiddleware(echo_app(), rate=rate, burst=burst, policy=policy)  # type: ignore[arg-type]
    limiter = _InboundLimiter.__new__(_InboundLimiter)
    _InboundLimiter.__init__(limiter, mw, _FakeConn(), None)  # type: ignore[arg-type]
    gcra, tat, now = Gcra(rate, burst), 0.0, 0.0
    for gap in gaps:
        now += gap
        tat, expected = gcra.take(tat, now, reserve=policy == "delay")
        verdict = limiter.check({"type": "websocket.receive", "text": "x"}, now)
        if policy == "delay":
            assert verdict == pytest.approx(expected)
        else:
            assert (verdict == 0.0) == (expected == 0.0)


class _FakeConn:
    _control = None

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"path": "/", "client": ("1.2.3.4", 5)}

    def time(self) -> float:
        return 0.0

    def close(self, code: int, reason: str) -> None:
        pass


async def test_memory_store_shares_limits_and_forgets_idle_keys_first() -> None:
    now = [0.0]
    store = MemoryRateLimitStore(max_keys=3, clock=lambda: now[0])
    assert await store.acquire("alice", 1, 1, reserve=False) == 0
    assert await store.acquire("alice", 1, 1, reserve=False) == pytest.approx(1.0)
    await store.acquire("bob", 1, 1, reserve=False)
    await store.acquire("carol", 1, 1, reserve=False)
    now[0] = 0.5
    await store.acquire("dave", 1, 5, reserve=False)  # full store, nothing idle yet: the oldest goes
    assert len(store) == 3 and "alice" not in store._tats
    now[0] = 10
    for _ in range(5):
        await store.acquire("dave", 1, 5, reserve=False)  # dave is busy, bob and carol are idle again
    await store.acquire("erin", 1, 1, reserve=False)  # full again: the idle ones are forgotten first
    assert set(store._tats) == {"dave", "erin"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "limits nothing"),
        ({"rate": 0}, "rate must be positive"),
        ({"rate": 1, "policy": "ignore"}, "policy must be"),
        ({"rate": 1, "burst": 0.5}, "burst must be at least 1"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"shared_key": lambda s: "x"}, "go together"),
        ({"shared_key": lambda s: "x", "shared_rate": -1}, "shared_rate must be positive"),
        ({"rate": 1, "close_code": 1006}, "close_code=1006 cannot be sent"),
        ({"rate": 1, "close_code": 999}, "close_code=999 cannot be sent"),
        ({"rate": 1, "close_code": 1008.0}, "close_code must be an int"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RateLimitMiddleware(echo_app(), **kwargs)


# -- policies, in memory ----------------------------------------------------------------------


async def test_drop_policy_drops_silently_for_plain_clients_and_tells_opted_in_ones() -> None:
    probe = Probe()
    mw = RateLimitMiddleware(echo_app(probe), rate=0.001, burst=3, policy="drop")
    async with Harness(mw) as ws:
        await ws.next_text()
        for i in range(6):
            ws.send_text(f"m{i}")
        for i in range(3):
            assert await ws.next_text() == f"m{i}"
        assert await ws.nothing(0.2)  # a plain client gets no control message
    assert received_texts(probe) == ["m0", "m1", "m2"]
    assert mw.stats.dropped == 3

    mw = RateLimitMiddleware(echo_app(), rate=0.001, burst=2, policy="drop")
    async with Harness(mw) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})  # every session middleware speaks the protocol; one token
        assert (await ws.next_json())["$ws"] == "welcome"
        ws.send_text("a")
        assert await ws.next_text() == "a"
        for _ in range(5):
            ws.send_text("flood")
        error = await ws.next_json()
        assert error == {
            "$ws": "error",
            "code": "rate_limited",
            "message": "message dropped: over the rate limit",
            "dropped": 1,
        }
        assert await ws.nothing(0.2)  # at most one error a second


async def test_delay_policy_lets_everything_through_later() -> None:
    probe = Probe()
    mw = RateLimitMiddleware(echo_app(probe), rate=50, burst=1, policy="delay")
    async with Harness(mw) as ws:
        await ws.next_text()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(6):
            ws.send_text(str(i))
        assert [await ws.next_text() for _ in range(6)] == [str(i) for i in range(6)]
        assert loop.time() - start >= 5 / 50 * 0.9  # five waited for their token
    assert mw.stats.delayed == 5 and mw.stats.dropped == 0


async def test_close_policy_closes_with_1008() -> None:
    probe = Probe()
    mw = RateLimitMiddleware(echo_app(probe), rate=0.001, burst=2, policy="close")
    async with Harness(mw) as ws:
        await ws.next_text()
        for i in range(3):
            ws.send_text(str(i))
        assert [await ws.next_text(), await ws.next_text()] == ["0", "1"]
        assert await ws.next() == {"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded"}
        await probe.wait_ended()
    assert probe.disconnects == [{"type": "websocket.disconnect", "code": 1008, "reason": "rate limit exceeded"}]
    assert mw.stats.closed == 1


async def test_oversized_messages_close_with_1009_counting_utf8_bytes() -> None:
    for message, closes in [("x" * 100, False), ("é" * 50, False), ("é" * 51, True), ("x" * 101, True)]:
        probe = Probe()
        async with Harness(RateLimitMiddleware(echo_app(probe), max_message_size=100)) as ws:
            await ws.next_text()
            ws.send_text(message)
            reply = await ws.next()
            if closes:
                assert reply == {"type": "websocket.close", "code": 1009, "reason": "message too big"}
            else:
                assert reply["text"] == message
    async with Harness(RateLimitMiddleware(echo_app(), max_message_size=4)) as ws:
        await ws.next_text()
        ws.send_bytes(b"12345")
        assert (await ws.next())["code"] == 1009


async def test_a_shared_key_shares_one_bucket_across_connections() -> None:
    mw = RateLimitMiddleware(
        echo_app(), shared_key=lambda scope: "same-user", shared_rate=0.001, shared_burst=3, policy="drop"
    )
    async with Harness(mw) as first, Harness(mw) as second:
        await first.next_text()
        await second.next_text()
        for i in range(2):
            first.send_text(f"a{i}")
            second.send_text(f"b{i}")
        echoed: list[str] = []
        async with asyncio.timeout(10):  # every message echoed or dropped, however slow the machine
            while len(echoed) + mw.stats.dropped < 4:
                for ws in (first, second):
                    if not await ws.nothing(0.05):
                        echoed.append(await ws.next_text())
        for ws in (first, second):
            assert await ws.nothing(0.2)
    assert len(echoed) == 3 and mw.stats.dropped == 1  # 4 messages, 3 tokens between both connections

    per_ip = RateLimitMiddleware(echo_app(), shared_key=lambda scope: scope["client"][0], shared_rate=100)
    assert per_ip.store is not None and per_ip.shared_burst == 100


# -- end to end -----------------------------------------------------------------------------------


async def test_flood_and_oversize_end_to_end(ws_impl: str) -> None:
    probe = Probe()
    app = RateLimitMiddleware(echo_app(probe), rate=0.001, burst=5, max_message_size=1000, policy="drop")
    async with serve(app, ws=ws_impl) as server:
        async with opened(server.ws_url("/ws"), ping_interval=None) as conn:
            await conn.recv()
            for i in range(50):
                await conn.send(f"flood {i}")
            replies = [await asyncio.wait_for(conn.recv(), 5) for _ in range(5)]
            assert replies == [f"flood {i}" for i in range(5)]
            await conn.send(json.dumps({"x": "y" * 2000}))  # too big: closed even though over the rate
            with pytest.raises(ClientConnectionClosed):
                while True:
                    await asyncio.wait_for(conn.recv(), 5)
            assert (conn.close_code, conn.close_reason) == (1009, "message too big")
        await probe.wait_ended()
    assert received_texts(probe) == [f"flood {i}" for i in range(5)]
    assert app.stats.dropped == 45 and app.stats.oversized == 1
