from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from asgi_ws import AuthMiddleware, ConfigurationError, ConnectionLimitMiddleware, OriginMiddleware
from asgi_ws.auth import BearerToken
from asgi_ws.metrics import AsgiWsCollector
from asgi_ws.middleware.connlimit import ConnectionCounter, client_key
from asgi_ws.types import Receive, Scope, Send
from tests.client.conftest import until
from tests.support.apps import Probe, echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.clients import Refusal, open_or_refusal, opened, refusal
from tests.support.server import serve


def idle(mw: ConnectionLimitMiddleware) -> bool:
    counter = mw.counter
    return counter.open == 0 and not counter.per_ip and not counter.per_user


# -- the counter, pure -----------------------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from(["a", "b", "c", None]), st.sampled_from(["u", "v", None])),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=50), st.none()),
    ),
    max_size=80,
)


@given(_OPS, st.sampled_from([None, 1, 3]), st.sampled_from([None, 1, 2]), st.sampled_from([None, 1, 2]))
def test_the_counter_decides_like_a_model_and_forgets_keys_at_zero(
    ops: list[tuple[str, Any, Any]], total: int | None, per_ip: int | None, per_user: int | None
) -> None:
    if total is None and per_ip is None and per_user is None:
        total = 2
    counter = ConnectionCounter(total, per_ip, per_user)
    live: list[tuple[Any, Any]] = []
    for op, a, b in ops:
        if op == "admit":
            over = (
                "global"
                if total is not None and len(live) >= total
                else "ip"
                if a is not None and per_ip is not None and sum(ip == a for ip, _ in live) >= per_ip
                else "user"
                if b is not None and per_user is not None and sum(u == b for _, u in live) >= per_user
                else None
            )
            assert counter.admit(a, b) == over
            if over is None:
                live.append((a, b))
        elif live:
            counter.release(*live.pop(a % len(live)))
        assert counter.open == len(live)
        assert counter.per_ip == {
            k: n for k in {ip for ip, _ in live if ip is not None} if (n := [i for i, _ in live].count(k))
        }
        assert counter.per_user == {k: [u for _, u in live].count(k) for k in {u for _, u in live if u is not None}}
        assert 0 not in counter.per_ip.values() and 0 not in counter.per_user.values()


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (("203.0.113.7", 5000), "203.0.113.7"),
        (("2001:db8:1:2:3:4:5:6", 5000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:ffff::1", 5000), "2001:db8:1:2::/64"),  # the same /64: the same key
        (("fe80::1%eth0", 5000), "fe80::/64"),
        (("::ffff:198.51.100.1", 5000), "198.51.100.1"),
        (("not-an-address", 1), "not-an-address"),
        (("bad:address:zz", 1), "bad:address:zz"),
        (None, None),
    ],
)
def test_client_key(client: tuple[str, int] | None, expected: str | None) -> None:
    assert client_key({"client": client}) == expected


def test_client_key_with_a_full_ipv6_prefix_counts_each_address() -> None:
    assert client_key({"client": ("2001:db8::1", 1)}, ipv6_prefix=128) == "2001:db8::1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "limits nothing"),
        ({"max_connections": 0}, "max_connections must be a positive integer"),
        ({"max_per_ip": 1.5}, "max_per_ip must be a positive integer"),
        ({"max_per_user": True}, "max_per_user must be a positive integer"),
        ({"max_connections": 1, "ipv6_prefix": 0}, "ipv6_prefix"),
        ({"max_connections": 1, "retry_after": -1}, "retry_after"),
        ({"max_connections": 1, "retry_after": 1.5}, "retry_after"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ConnectionLimitMiddleware(echo_app(), **kwargs)


# -- the middleware, in memory ---------------------------------------------------------------


async def test_refusals_before_accept_with_status_reason_retry_after_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="asgi_ws")
    probe = Probe()
    mw = ConnectionLimitMiddleware(echo_app(probe), max_connections=2, max_per_ip=1, retry_after=7)

    def from_address(host: str) -> dict[str, Any]:
        scope = ws_scope()
        scope["client"] = (host, 4000)
        return scope

    first, comm1 = await handshake(mw, from_address("192.0.2.1"))
    assert first.kind == "accepted"
    over_ip, _ = await handshake(mw, from_address("192.0.2.1"))  # that address already holds its one
    assert (over_ip.status, over_ip.body) == (429, b"too many connections from this address")
    assert over_ip.headers["retry-after"] == "7"
    second, comm2 = await handshake(mw, from_address("192.0.2.2"))
    assert second.kind == "accepted"
    full, _ = await handshake(mw, from_address("192.0.2.3"))
    assert (full.status, full.body) == (503, b"server at its connection limit")
    assert full.headers["retry-after"] == "7"
    assert probe.calls == 2 and mw.refused == {"global": 1, "ip": 1, "user": 0}
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "asgi_ws.handshake"]
    assert lines[0][0] == logging.INFO and lines[0][1].endswith(
        "refused by ConnectionLimitMiddleware: 429 too many connections from this address "
        "(1 open from '192.0.2.1', max_per_ip 1)"
    )
    assert lines[1][0] == logging.WARNING and lines[1][1].endswith(
        "refused by ConnectionLimitMiddleware: 503 server at its connection limit (2 open, max_connections 2)"
    )
    for comm in (comm1, comm2):
        await comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await comm.wait(2)
    assert idle(mw)
    assert (await handshake(mw, from_address("192.0.2.3")))[0].kind == "accepted"  # room again


async def _raising(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise RuntimeError("app bug")


async def _hanging(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()


async def test_released_however_the_connection_ends() -> None:
    # The app raises.
    mw = ConnectionLimitMiddleware(_raising, max_connections=1, max_per_ip=1)
    outcome, comm = await handshake(mw, ws_scope())
    assert outcome.kind == "accepted"
    with pytest.raises(RuntimeError, match="app bug"):
        await comm.wait(2)
    assert idle(mw)
    # The task is cancelled (the server shuts down, the client vanished mid-handshake).
    mw = ConnectionLimitMiddleware(_hanging, max_connections=1, max_per_ip=1)
    outcome, comm = await handshake(mw, ws_scope())
    assert outcome.kind == "accepted" and mw.open == 1
    comm.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await comm.future
    assert idle(mw)
    # An inner middleware refuses the handshake.
    mw = ConnectionLimitMiddleware(AuthMiddleware(echo_app(), backend=BearerToken(lambda t: None)), max_connections=1)
    for _ in range(3):
        outcome, comm = await handshake(mw, ws_scope(headers=[("authorization", "Bearer x")]))
        assert outcome.status == 401
        await comm.wait(2)
        assert idle(mw)
    # The client drops: the app gets its disconnect and returns.
    mw = ConnectionLimitMiddleware(echo_app(), max_connections=1, max_per_ip=1)
    outcome, comm = await handshake(mw, ws_scope())
    await comm.send_input({"type": "websocket.disconnect", "code": 1006})
    await comm.wait(2)
    assert idle(mw)


async def test_per_user_inside_auth_and_a_warning_when_placed_outside(caplog: pytest.LogCaptureFixture) -> None:
    users = {"a1": "alice", "a2": "alice", "b1": "bob"}
    limit = ConnectionLimitMiddleware(echo_app(), max_per_user=1)
    mw = AuthMiddleware(limit, backend=BearerToken(users.get), allow_anonymous=True)
    alice, comm = await handshake(mw, ws_scope(headers=[("authorization", "Bearer a1")]))
    assert alice.kind == "accepted" and limit.counter.per_user == {"alice": 1}
    again, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer a2")]))
    assert (again.status, again.body) == (429, b"too many connections for this user")
    held = [await handshake(mw, ws_scope(headers=[("authorization", "Bearer b1")]))]
    held += [await handshake(mw, ws_scope()) for _ in range(2)]  # anonymous users are not counted per user
    assert [outcome.kind for outcome, _ in held] == ["accepted"] * 3
    assert limit.counter.per_user == {"alice": 1, "bob": 1} and limit.open == 4

    caplog.set_level("WARNING", logger="asgi_ws")
    outside = ConnectionLimitMiddleware(AuthMiddleware(echo_app(), backend=BearerToken(users.get)), max_per_user=1)
    for _ in range(2):
        assert (await handshake(outside, ws_scope(headers=[("authorization", "Bearer a1")])))[0].kind == "accepted"
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "asgi_ws.connlimit"]
    assert "place it inside AuthMiddleware" in warning


async def test_http_passes_through_uncounted() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    mw = ConnectionLimitMiddleware(app, max_connections=1)
    await mw({"type": "http"}, None, None)  # type: ignore[arg-type]
    assert seen == ["http"] and mw.open == 0


async def test_metrics() -> None:
    mw = ConnectionLimitMiddleware(echo_app(), max_connections=1)
    registry = CollectorRegistry()
    registry.register(AsgiWsCollector(connlimit=[mw], names=["ws"]))
    _, comm = await handshake(mw, ws_scope())
    await handshake(mw, ws_scope())
    text = generate_latest(registry).decode()
    for line in [
        'asgi_ws_connlimit_open{middleware="ws"} 1.0',
        'asgi_ws_connlimit_max{middleware="ws"} 1.0',
        'asgi_ws_connlimit_refused_total{limit="global",middleware="ws"} 1.0',
        'asgi_ws_connlimit_refused_total{limit="ip",middleware="ws"} 0.0',
    ]:
        assert line in text, line
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(2)


# -- end to end through uvicorn ------------------------------------------------------------


async def test_exact_under_a_burst_of_concurrent_handshakes(ws_impl: str) -> None:
    probe = Probe()
    mw = ConnectionLimitMiddleware(echo_app(probe), max_connections=3)
    async with serve(mw, ws=ws_impl) as server:
        url = server.ws_url("/ws")
        results = await asyncio.gather(*(open_or_refusal(url) for _ in range(12)))
        accepted = [r for r in results if not isinstance(r, Refusal)]
        refused = [r for r in results if isinstance(r, Refusal)]
        assert len(accepted) == 3 and mw.open == 3
        assert {(r.status, r.body, r.headers.get("retry-after")) for r in refused} == {
            (503, "server at its connection limit", "5")
        }
        assert mw.refused["global"] == 9
        for conn in accepted:
            assert json.loads(await conn.recv())["user"] is None
            await conn.close()
        await until(lambda: idle(mw))  # the three closed connections to be released
        async with opened(url) as conn:
            await conn.recv()


async def test_released_when_the_client_drops_or_the_app_fails(ws_impl: str) -> None:
    probe = Probe()
    mw = ConnectionLimitMiddleware(echo_app(probe), max_connections=1, max_per_ip=1)
    async with serve(mw, ws=ws_impl) as server:
        url = server.ws_url("/ws")
        dropped = await open_or_refusal(url)
        assert not isinstance(dropped, Refusal), dropped
        await dropped.recv()
        dropped.transport.abort()  # no close frame: the TCP connection just drops
        await until(lambda: idle(mw))  # the dropped connection to be released
        async with opened(url) as conn:
            await conn.recv()
        await until(lambda: idle(mw))  # the closed connection to be released

    failing = ConnectionLimitMiddleware(_raising, max_connections=1)
    async with serve(failing, ws=ws_impl) as server:
        for _ in range(2):  # the second would be refused if the first were still counted
            result = await open_or_refusal(server.ws_url("/ws"))
            assert not isinstance(result, Refusal), result
            await result.wait_closed()
            await until(lambda: idle(failing))  # the failed connection to be released


async def test_per_ip_behind_a_trusted_proxy_uses_the_forwarded_address(ws_impl: str) -> None:
    mw = ConnectionLimitMiddleware(echo_app(), max_per_ip=1)
    # uvicorn rewrites scope["client"] from X-Forwarded-For when the peer is a trusted proxy.
    async with serve(mw, ws=ws_impl, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as server:
        url = server.ws_url("/ws")
        alice = {"X-Forwarded-For": "203.0.113.7"}
        async with opened(url, additional_headers=alice) as conn:
            await conn.recv()
            assert mw.counter.per_ip == {"203.0.113.7": 1}
            refused = await refusal(url, additional_headers=alice)
            assert (refused.status, refused.body) == (429, "too many connections from this address")
            async with opened(url, additional_headers={"X-Forwarded-For": "198.51.100.2"}) as other:
                await other.recv()  # another client behind the same proxy is not held back
                assert set(mw.counter.per_ip) == {"203.0.113.7", "198.51.100.2"}
        await until(lambda: idle(mw))  # both connections to be released
    # From an untrusted peer the header is ignored: every connection is the peer's own.
    async with serve(mw, ws=ws_impl, proxy_headers=True, forwarded_allow_ips="192.0.2.1") as server:
        url = server.ws_url("/ws")
        async with opened(url, additional_headers={"X-Forwarded-For": "203.0.113.7"}) as conn:
            await conn.recv()
            assert mw.counter.per_ip == {"127.0.0.1": 1}
            refused = await refusal(url, additional_headers={"X-Forwarded-For": "198.51.100.2"})
            assert refused.status == 429


async def test_outermost_in_front_of_origin_and_auth(ws_impl: str) -> None:
    """Placed outermost, a full server refuses before any origin or credential is looked at."""
    checked: list[str] = []

    def verify(token: str) -> str:
        checked.append(token)
        return "alice"

    stack = ConnectionLimitMiddleware(
        OriginMiddleware(
            AuthMiddleware(echo_app(), backend=BearerToken(verify)), allow_origins=["https://app.example.com"]
        ),
        max_connections=1,
    )
    async with serve(stack, ws=ws_impl) as server:
        url = server.ws_url("/ws")
        headers = {"Authorization": "Bearer t"}
        async with opened(url, origin="https://app.example.com", additional_headers=headers) as conn:
            await conn.recv()
            refused = await refusal(url, origin="https://app.example.com", additional_headers=headers)
            assert refused.status == 503 and checked == ["t"]


# -- asgi-ws serve ---------------------------------------------------------------------------


def test_serve_options_and_defaults() -> None:
    from asgi_ws.cli import parse_args
    from asgi_ws.middleware.connlimit import default_max_connections

    args = parse_args(["serve"])
    assert (args.max_connections, args.max_connections_per_ip) == (default_max_connections(), 100)
    assert 1 <= default_max_connections() <= 10_000
    assert default_max_connections(ceiling=50, reserve=0) == 50
    args = parse_args(["serve", "--max-connections", "0", "--max-connections-per-ip", "3"])
    assert (args.max_connections, args.max_connections_per_ip) == (0, 3)


async def test_asgi_ws_serve_refuses_past_its_caps_before_the_origin_check() -> None:
    from asgi_ws.cli import build_app

    app = build_app(max_connections=2, max_connections_per_ip=1, metrics=True)
    async with serve(app, lifespan="on", proxy_headers=True, forwarded_allow_ips="127.0.0.1") as server:
        url, same = server.ws_url("/ws"), f"http://127.0.0.1:{server.port}"
        first = {"X-Forwarded-For": "203.0.113.1"}
        async with opened(url, origin=same, additional_headers=first, ping_interval=None):
            refused = await refusal(url, origin=same, additional_headers=first)
            assert (refused.status, refused.headers.get("retry-after")) == (429, "5")
            second = {"X-Forwarded-For": "203.0.113.2"}
            async with opened(url, origin=same, additional_headers=second, ping_interval=None):
                third = {"X-Forwarded-For": "203.0.113.3"}
                refused = await refusal(url, origin="https://evil.example", additional_headers=third)
                assert (refused.status, refused.body) == (503, "server at its connection limit")
                async with httpx.AsyncClient() as client:
                    text = (await client.get(server.http_url("/metrics"))).text
        assert 'asgi_ws_connlimit_open{middleware="ws"} 2.0' in text
        assert 'asgi_ws_connlimit_refused_total{limit="ip",middleware="ws"} 1.0' in text
    assert build_app(max_connections=0, max_connections_per_ip=None) is not None  # no limit: no middleware
