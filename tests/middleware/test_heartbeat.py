from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed

from asgi_ws import CloseCode, ConfigurationError, HeartbeatMiddleware, connection_of
from asgi_ws.middleware.heartbeat import HeartbeatPolicy
from asgi_ws.timers import timer_service
from asgi_ws.types import Message, Receive, Scope, Send
from tests.support.apps import Probe, echo_app
from tests.support.asgi import ws_scope
from tests.support.clients import opened
from tests.support.server import serve
from tests.support.session import Harness

# -- the pure policy --------------------------------------------------------------------


def test_policy_pings_after_interval_of_silence_then_times_out() -> None:
    policy = HeartbeatPolicy(interval=10, timeout=5)
    step = lambda now, **kw: policy.step(now, opted_in=True, last_activity=0, **kw)  # noqa: E731
    assert step(3, last_inbound=0, ping_sent_at=None) == ("wait", 10)
    assert step(10, last_inbound=0, ping_sent_at=None) == ("ping", 15)
    assert step(12, last_inbound=0, ping_sent_at=10) == ("wait", 15)
    assert step(15, last_inbound=0, ping_sent_at=10) == ("timeout", None)
    # Any message after the ping is a sign of life; the next ping comes interval after it.
    assert step(15, last_inbound=11, ping_sent_at=10) == ("wait", 21)
    # A chatty client is never pinged: the interval counts from its last message.
    assert step(30, last_inbound=29, ping_sent_at=None) == ("wait", 39)


def test_policy_ignores_clients_that_did_not_opt_in_but_applies_idle_timeout() -> None:
    policy = HeartbeatPolicy(interval=10, timeout=5, idle_timeout=60)
    assert policy.step(100, opted_in=False, last_inbound=0, last_activity=50, ping_sent_at=None) == ("wait", 110)
    assert policy.step(110, opted_in=False, last_inbound=0, last_activity=50, ping_sent_at=None) == ("idle", None)
    assert HeartbeatPolicy(interval=10).step(5, opted_in=False, last_inbound=0, last_activity=0, ping_sent_at=None) == (
        "wait",
        None,
    )
    assert HeartbeatPolicy(interval=None, idle_timeout=3).step(
        1, opted_in=True, last_inbound=0, last_activity=0, ping_sent_at=None
    ) == ("wait", 3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"timeout": 0},
        {"idle_timeout": -1},
        {"interval": -5},
        {"interval": float("nan")},
        {"timeout": float("inf")},
        {"interval": "20"},
        {"timeout": True},
    ],
)
def test_policy_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        HeartbeatPolicy(**kwargs)


def test_without_a_timeout_pings_keep_coming_and_nothing_closes() -> None:
    policy = HeartbeatPolicy(interval=10, timeout=None)
    step = lambda now, **kw: policy.step(now, opted_in=True, last_activity=0, **kw)  # noqa: E731
    assert step(10, last_inbound=0, ping_sent_at=None) == ("ping", 20)
    assert step(15, last_inbound=0, ping_sent_at=10) == ("wait", 20)
    assert step(20, last_inbound=0, ping_sent_at=10) == ("ping", 30)  # unanswered: ping again, never close
    assert step(25, last_inbound=21, ping_sent_at=20) == ("wait", 31)


@pytest.mark.parametrize(
    "kwargs", [{"close_code": 1006}, {"close_code": 1005}, {"idle_close_code": 1015}, {"close_code": 5000}]
)
def test_close_codes_a_peer_cannot_receive_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="close"):
        HeartbeatMiddleware(echo_app(), **kwargs)


def test_timeout_none_is_accepted() -> None:
    middleware = HeartbeatMiddleware(echo_app(), interval=5, timeout=None)
    assert middleware.announcement == {"interval": 5, "timeout": None}


# -- in memory ----------------------------------------------------------------------------


async def test_opted_in_client_is_pinged_answers_and_stays() -> None:
    async with Harness(HeartbeatMiddleware(echo_app(), interval=0.1, timeout=0.2)) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})
        await ws.next_json()  # welcome
        for expected_id in (1, 2, 3):
            ping = await ws.next_json()
            assert ping == {"$ws": "ping", "id": expected_id}
            ws.send_json({"$ws": "pong", "id": expected_id})
        conn = connection_of(ws.scope)
        assert conn is not None and conn.heartbeat.rtt is not None
        assert ws.closed is None


async def test_silent_client_is_closed_with_4408_and_the_app_told() -> None:
    probe = Probe()
    async with Harness(HeartbeatMiddleware(echo_app(probe), interval=0.05, timeout=0.1)) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})
        await ws.next_json()
        assert (await ws.next_json())["$ws"] == "ping"
        close = await ws.next(2)
        assert close == {"type": "websocket.close", "code": 4408, "reason": "heartbeat timeout"}
        await probe.wait_ended()
    assert probe.disconnects == [{"type": "websocket.disconnect", "code": 4408, "reason": "heartbeat timeout"}]


async def test_client_pings_are_answered_even_without_hello_and_never_pinged_back() -> None:
    async with Harness(HeartbeatMiddleware(echo_app(), interval=0.05, timeout=0.05)) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "ping", "id": "c1"})
        assert await ws.next_json() == {"$ws": "pong", "id": "c1"}
        assert await ws.nothing(0.3)  # not opted in: no server pings, no timeout
        assert ws.closed is None


async def test_pings_and_pongs_as_clients_write_them_take_the_fast_path_and_others_the_router() -> None:
    async with Harness(HeartbeatMiddleware(echo_app(), interval=0.1, timeout=0.5)) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})
        await ws.next_json()  # welcome
        conn = connection_of(ws.scope)
        assert conn is not None
        # Exactly as the clients write them: no JSON decoding, same answers as the router's.
        ws.send_text('{"$ws":"ping","id":12}')
        assert await ws.next_text() == '{"$ws":"pong","id":12}'
        ping = await ws.next_json()
        ws.send_text(f'{{"$ws":"pong","id":{ping["id"]}}}')
        await asyncio.sleep(0.01)
        assert conn.heartbeat.ping_sent_at is None and conn.heartbeat.rtt is not None
        # Anything else goes to the router: other spellings, other ids, and what JSON refuses.
        ws.send_text('{"$ws": "ping", "id": 13}')
        assert await ws.next_text() == '{"$ws":"pong","id":13}'
        ws.send_text('{"$ws":"ping","id":"c1"}')
        assert await ws.next_json() == {"$ws": "pong", "id": "c1"}
        for bad in ('{"$ws":"ping","id":007}', '{"$ws":"pong","id":-1', '{"$ws":"ping","id":1e3x}'):
            ws.send_text(bad)
            answer = await ws.next_json()
            assert answer["$ws"] == "error", (bad, answer)
        ws.send_text('{"$ws":"pong","id":99999}')  # not the ping awaiting an answer: a sign of life all the same
        await asyncio.sleep(0.01)
        assert ws.closed is None and conn.heartbeat.ping_sent_at is None


async def test_idle_timeout_closes_plain_clients_and_heartbeats_are_not_activity() -> None:
    async with Harness(HeartbeatMiddleware(echo_app(), interval=None, idle_timeout=0.3)) as ws:
        await ws.next_text()
        for _ in range(3):  # application messages keep it open
            await asyncio.sleep(0.1)
            ws.send_text("x")
            await ws.next_text()
        for _ in range(5):  # pings alone do not
            ws.send_json({"$ws": "ping"})
            await ws.next_json()
            await asyncio.sleep(0.05)
        close = await ws.next(2)
        assert close == {"type": "websocket.close", "code": 4410, "reason": "idle timeout"}


async def test_the_close_reaches_an_app_blocked_in_receive_even_if_the_frame_cannot_be_written() -> None:
    probe = Probe()
    async with Harness(HeartbeatMiddleware(echo_app(probe), interval=0.05, timeout=0.05)) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})
        await ws.next_json()
        ws.writable.clear()  # the client stopped reading: nothing more can be written
        await probe.wait_ended(5)
        assert probe.disconnects[0]["code"] == 4408
        ws.writable.set()


class _FailingPings(Harness):
    """A server whose write of the first ``fail`` pings raises (a protocol-state error, not an OSError)."""

    def __init__(self, app: Any, fail: int) -> None:
        super().__init__(app)
        self.fail = fail

    async def _send(self, message: Message) -> None:
        if self.fail and message.get("text", "").startswith('{"$ws":"ping"'):
            self.fail -= 1
            raise ValueError("the server could not write the frame")
        await super()._send(message)


async def test_a_ping_whose_write_failed_still_times_out_the_dead_peer() -> None:
    probe = Probe()
    async with _FailingPings(HeartbeatMiddleware(echo_app(probe), interval=0.05, timeout=0.1), fail=1) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 1})
        await ws.next_json()  # welcome; the first ping's write fails, and the peer never answers
        await probe.wait_ended(5)
    assert probe.disconnects[0]["code"] == 4408


def _tolerant(app: Any) -> Any:
    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(ValueError):  # its send raised the server's write error, as the server would
            await app(scope, receive, send)

    return run


def _live_timer(scope: Scope) -> bool:
    conn = connection_of(scope)
    assert conn is not None
    timer = conn.heartbeat.timer
    return conn.closing or conn.ended or (timer is not None and not timer.cancelled)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from(["pong", "pong_wrong_id", "pong_bad_type", "ping", "data", "hello_again", "wait", "fail_ping"]),
        max_size=8,
    )
)
def test_a_heartbeat_has_a_live_timer_until_its_connection_closes(actions: list[str]) -> None:
    async def run() -> None:
        probe = Probe()  # the echo app's sends after a failed write raise: it ends, which is fine here
        harness = _FailingPings(HeartbeatMiddleware(_tolerant(echo_app(probe)), interval=0.02, timeout=0.2), fail=0)
        async with harness as ws:
            await ws.next_text()
            ws.send_json({"$ws": "hello", "v": 1})
            await ws.next_json()
            for action in actions:
                if action == "fail_ping":
                    ws.fail += 1
                elif action == "wait":  # long enough for a ping to fire (timers run in 50 ms slices)
                    await asyncio.sleep(0.12)
                elif action == "data":
                    ws.send_text("x")
                else:
                    message = {
                        "pong": {"$ws": "pong", "id": 1},
                        "pong_wrong_id": {"$ws": "pong", "id": 999},
                        "pong_bad_type": {"$ws": "pong", "id": "one"},
                        "ping": {"$ws": "ping", "id": 5},
                        "hello_again": {"$ws": "hello", "v": 1},
                    }[action]
                    ws.send_json(message)
                await asyncio.sleep(0.005)
                assert _live_timer(ws.scope), f"no live heartbeat timer after {action!r}"

    asyncio.run(run())


async def test_ten_thousand_idle_connections_are_heap_entries_not_tasks() -> None:
    count = 10_000
    middleware = HeartbeatMiddleware(_idle_app, interval=30, timeout=10, idle_timeout=300)
    inboxes: list[asyncio.Queue[Message]] = []
    tasks_before = len(asyncio.all_tasks())
    timers_before = len(timer_service())
    loop = asyncio.get_running_loop()
    handles_before = len(loop._scheduled)  # type: ignore[attr-defined]

    async def noop_send(message: Message) -> None:
        pass

    app_tasks = []
    for _ in range(count):
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        inbox.put_nowait({"type": "websocket.connect"})
        inboxes.append(inbox)
        app_tasks.append(asyncio.create_task(middleware(ws_scope(), inbox.get, noop_send)))
    await asyncio.sleep(0.2)
    # One task per connection is the application itself, as without the middleware; the
    # heartbeat adds a heap entry each and one loop handle in all.
    assert len(asyncio.all_tasks()) - tasks_before == count
    assert len(timer_service()) - timers_before == count
    assert len(loop._scheduled) - handles_before <= 2  # type: ignore[attr-defined]
    for inbox in inboxes:
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*app_tasks)
    assert len(timer_service()) == timers_before


async def _idle_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()


# -- end to end ---------------------------------------------------------------------------


async def test_heartbeat_end_to_end(ws_impl: str) -> None:
    interval, timeout = 0.3, 0.4
    probe = Probe()
    app = HeartbeatMiddleware(echo_app(probe), interval=interval, timeout=timeout)
    async with serve(app, ws=ws_impl) as server:
        # A client that answers pings stays connected over many intervals.
        async with opened(server.ws_url("/ws"), ping_interval=None) as conn:
            await conn.recv()
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            assert json.loads(await conn.recv())["$ws"] == "welcome"
            pings = 0
            deadline = time.monotonic() + 5 * interval
            while time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(conn.recv(), 5))
                assert message["$ws"] == "ping"
                pings += 1
                await conn.send(json.dumps({"$ws": "pong", "id": message["id"]}))
            assert pings >= 3
            await conn.send("still here")
            assert await conn.recv() == "still here"

        # A client that stops answering is closed within interval + timeout.
        async with opened(server.ws_url("/ws"), ping_interval=None) as conn:
            await conn.recv()
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            await conn.recv()
            silent_since = time.monotonic()
            with pytest.raises(ClientConnectionClosed):
                while True:
                    await asyncio.wait_for(conn.recv(), 10)  # reads the ping, never answers
            elapsed = time.monotonic() - silent_since
            assert (conn.close_code, conn.close_reason) == (CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            assert interval + timeout - 0.05 <= elapsed < interval + timeout + 2.0
        await asyncio.wait_for(probe.ended.wait(), 5)
    assert probe.disconnects[-1]["code"] == 4408


async def test_client_that_stops_reading_is_found_dead(ws_impl: str) -> None:
    probe = Probe()
    app = HeartbeatMiddleware(echo_app(probe), interval=0.2, timeout=0.3)
    async with serve(app, ws=ws_impl) as server:
        async with opened(server.ws_url("/ws"), ping_interval=None) as conn:
            await conn.recv()
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            await conn.recv()
            assert conn.transport is not None
            conn.transport.pause_reading()  # a dead peer: reads nothing, answers nothing
            await probe.wait_ended(10)
            conn.transport.resume_reading()
    assert probe.disconnects[0]["code"] == 4408
