"""PubSubApp: the multiplexed protocol, its errors, limits, authorization, presence, fuzzing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_ws import ConfigurationError, PubSubApp, Rooms, connection_of
from asgi_ws.types import Scope
from tests.support.asgi import ws_scope
from tests.support.clients import opened
from tests.support.server import serve
from tests.support.session import Harness


async def hello(ws: Harness) -> dict[str, Any]:
    ws.send_json({"$ws": "hello", "v": 1})
    return await ws.next_json()  # type: ignore[no-any-return]


async def test_subscribe_publish_unsubscribe() -> None:
    app = PubSubApp()
    async with Harness(app) as a, Harness(app) as b:
        welcome = await hello(a)
        assert welcome["features"]["pubsub"] == {"max_subscriptions": 100, "max_publish_bytes": 65536, "publish": True}
        for ws in (a, b):
            ws.send_json({"$ws": "subscribe", "channel": "news", "id": 1})
            assert await ws.next_json() == {"$ws": "subscribed", "channel": "news", "id": 1}
        a.send_json({"$ws": "publish", "channel": "news", "data": {"headline": "hi"}, "id": "p1"})
        assert await a.next_json() == {"$ws": "published", "channel": "news", "id": "p1"}
        assert await b.next_json() == {"channel": "news", "data": {"headline": "hi"}}
        assert await a.nothing(0.1)  # no echo by default
        b.send_json({"$ws": "unsubscribe", "channel": "news"})
        assert await b.next_json() == {"$ws": "unsubscribed", "channel": "news"}
        a.send_json({"$ws": "publish", "channel": "news", "data": 2})
        assert await b.nothing(0.1)
        assert app.rooms.local_count("news") == 1
    await app.rooms.close()


async def test_echo_and_subscribe_only_endpoints() -> None:
    echo = PubSubApp(echo=True)
    async with Harness(echo) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "c"})
        await ws.next_json()
        ws.send_json({"$ws": "publish", "channel": "c", "data": "me"})
        assert await ws.next_json() == {"channel": "c", "data": "me"}
    readonly = PubSubApp(allow_publish=False)
    async with Harness(readonly) as ws:
        ws.send_json({"$ws": "publish", "channel": "c", "data": 1})
        assert (await ws.next_json())["code"] == "forbidden"
    await echo.rooms.close()
    await readonly.rooms.close()


async def test_errors_leave_the_connection_working() -> None:
    app = PubSubApp(max_subscriptions=2, max_publish_bytes=20)
    async with Harness(app) as ws:
        cases = [
            ({"$ws": "subscribe"}, "bad_field"),
            ({"$ws": "subscribe", "channel": 7}, "bad_field"),
            ({"$ws": "subscribe", "channel": ""}, "bad_field"),
            ({"$ws": "subscribe", "channel": "x" * 201}, "bad_field"),
            ({"$ws": "publish", "channel": "c"}, "bad_field"),
            ({"$ws": "publish", "channel": "c", "data": "y" * 30}, "too_large"),
            ({"$ws": "teleport", "channel": "c"}, "unknown_op"),
        ]
        for request, code in cases:
            ws.send_json(request)
            reply = await ws.next_json()
            assert (reply["$ws"], reply["code"]) == ("error", code), (request, reply)
        ws.send_text('{"$ws":"subscribe","channel":')
        assert (await ws.next_json())["code"] == "bad_json"
        ws.send_text("not a control message")
        assert (await ws.next_json())["code"] == "unexpected_message"
        for channel in ("one", "two", "one"):  # re-subscribing is not a new subscription
            ws.send_json({"$ws": "subscribe", "channel": channel})
            assert (await ws.next_json())["$ws"] == "subscribed"
        ws.send_json({"$ws": "subscribe", "channel": "three"})
        assert (await ws.next_json())["code"] == "too_many_subscriptions"
        ws.send_json({"$ws": "publish", "channel": "one", "data": "ok"})  # still works
        assert await ws.nothing(0.1)
    await app.rooms.close()


async def test_authorize_with_reasons() -> None:
    def authorize(scope: Scope, channel: str, action: str) -> bool | str:
        if channel.startswith("admin"):
            return "admins only"
        return not (action == "publish" and channel == "announcements")

    app = PubSubApp(authorize=authorize)
    async with Harness(app) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "admin-log"})
        assert await ws.next_json() == {
            "$ws": "error",
            "code": "forbidden",
            "message": "admins only",
            "ref": "subscribe",
        }
        ws.send_json({"$ws": "subscribe", "channel": "announcements"})
        assert (await ws.next_json())["$ws"] == "subscribed"
        ws.send_json({"$ws": "publish", "channel": "announcements", "data": 1})
        assert (await ws.next_json())["message"] == "forbidden"
    await app.rooms.close()

    rooms_deny = PubSubApp(Rooms(authorize=lambda scope, room, action: room != "secret" or "by rooms"))
    async with Harness(rooms_deny) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "secret"})
        assert (await ws.next_json())["message"] == "by rooms"
    await rooms_deny.rooms.close()


async def test_presence_query_and_diffs() -> None:
    app = PubSubApp()
    async with Harness(app) as a:
        a.send_json({"$ws": "subscribe", "channel": "room", "presence": True})
        first = await a.next_json()
        assert [m["member"] for m in first["members"]] == [first["members"][0]["member"]]
        async with Harness(app) as b:
            b.send_json({"$ws": "subscribe", "channel": "room"})
            await b.next_json()
            diff = await a.next_json()
            assert diff["$ws"] == "presence_diff" and diff["channel"] == "room" and "join" in diff
            b.send_json({"$ws": "presence", "channel": "room", "id": 3})
            reply = await b.next_json()
            assert reply["$ws"] == "presence" and len(reply["members"]) == 2 and reply["id"] == 3
        left = await a.next_json()
        assert left["$ws"] == "presence_diff" and left["leave"]["member"] == diff["join"]["member"]
    await app.rooms.close()


async def test_http_is_told_to_upgrade_and_lifespan_runs_the_rooms() -> None:
    app = PubSubApp()
    async with serve(app, lifespan="on", graceful=True) as server:
        async with httpx.AsyncClient() as client:
            response = await client.get(server.http_url("/"))
        assert response.status_code == 426 and response.headers["upgrade"] == "websocket"
        assert app.rooms._started
    assert app.rooms._closed


def test_configuration() -> None:
    import pytest

    with pytest.raises(ConfigurationError):
        PubSubApp(max_subscriptions=0)


requests = st.fixed_dictionaries(
    {"$ws": st.sampled_from(["subscribe", "unsubscribe", "publish", "presence", "hello", "bogus"])},
    optional={
        "channel": st.one_of(st.text(max_size=8), st.integers(), st.none(), st.just("x" * 300)),
        "data": st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                             lambda c: st.lists(c, max_size=3), max_leaves=5),
        "id": st.one_of(st.integers(), st.text(max_size=4)),
        "presence": st.booleans(),
        "v": st.integers(-2, 3),
    },
)  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, max_size=12))
def test_any_requests_get_answers_never_an_exception(batch: list[dict[str, Any]]) -> None:
    async def run() -> None:
        app = PubSubApp(max_subscriptions=3, max_publish_bytes=50, echo=True)
        async with Harness(app, ws_scope()) as ws:
            for request in batch:
                ws.send_text(json.dumps(request))
            ws.send_json({"$ws": "subscribe", "channel": "final"})
            ws.send_json({"$ws": "publish", "channel": "final", "data": "still working"})
            seen = []
            while True:
                message = await ws.next(3)
                text = message.get("text", "")
                seen.append(text)
                if text == '{"channel":"final","data":"still working"}':
                    break
                assert text.startswith('{"$ws"') or text.startswith('{"channel"'), text
            assert ws.task is not None and not ws.task.done()
        await app.rooms.close()

    asyncio.run(run())


async def test_pubsub_end_to_end(ws_impl: str) -> None:
    app = PubSubApp()
    async with serve(app, ws=ws_impl) as server:
        async with (
            opened(server.ws_url("/"), ping_interval=None) as a,
            opened(server.ws_url("/"), ping_interval=None) as b,
        ):
            for conn in (a, b):
                await conn.send(json.dumps({"$ws": "subscribe", "channel": "lobby"}))
                assert json.loads(await conn.recv())["$ws"] == "subscribed"
            await a.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": {"n": 1}}))
            assert json.loads(await b.recv()) == {"channel": "lobby", "data": {"n": 1}}
    await app.rooms.close()


async def test_subscription_meta_is_shown_by_presence_and_validated() -> None:
    app = PubSubApp()
    async with Harness(app) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "c", "presence": True, "meta": {"name": "alice"}})
        reply = await ws.next_json()
        assert reply["members"][0]["meta"] == {"name": "alice"}
        ws.send_json({"$ws": "subscribe", "channel": "d", "meta": ["not", "an", "object"]})
        assert (await ws.next_json())["code"] == "bad_field"
        ws.send_json({"$ws": "subscribe", "channel": "e", "meta": {"bio": "x" * 2000}})
        assert (await ws.next_json())["code"] == "too_large"
    await app.rooms.close()


async def test_sizes_are_utf8_bytes_and_meta_nesting_is_bounded() -> None:
    app = PubSubApp(max_publish_bytes=20)
    async with Harness(app) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "c", "meta": {"bio": "é" * 500}})  # 1,010 bytes in UTF-8
        assert (await ws.next_json())["$ws"] == "subscribed"
        ws.send_json({"$ws": "subscribe", "channel": "d", "meta": {"bio": "é" * 510}})
        assert (await ws.next_json())["code"] == "too_large"
        deep: Any = 1
        for _ in range(17):
            deep = {"k": deep}
        ws.send_json({"$ws": "subscribe", "channel": "e", "meta": deep})  # 17 levels: over MAX_META_DEPTH
        reply = await ws.next_json()
        assert (reply["code"], reply["ref"]) == ("too_deep", "subscribe")
        ws.send_json({"$ws": "publish", "channel": "c", "data": "é" * 9, "id": 1})  # 20 bytes
        assert (await ws.next_json())["$ws"] == "published"
        ws.send_json({"$ws": "publish", "channel": "c", "data": "é" * 10, "id": 2})
        assert (await ws.next_json())["code"] == "too_large"
    await app.rooms.close()


async def test_every_connection_of_an_app_shares_one_control_table() -> None:
    """The handlers are bound once per app: connections do not each build (and cache) a table."""
    app = PubSubApp()
    tables = []
    for _ in range(3):
        async with Harness(app) as ws:
            await hello(ws)
            ws.send_json({"$ws": "subscribe", "channel": "news", "id": 1})
            assert await ws.next_json() == {"$ws": "subscribed", "channel": "news", "id": 1}
            tables.append(connection_of(ws.scope).control._table)
    assert tables[0] is tables[1] is tables[2]
