"""Rooms across processes on the real brokers (Redis, PostgreSQL, NATS, RabbitMQ of this machine).

Two Rooms instances on one broker are two nodes of a cluster, as two worker processes are;
tests/rooms/test_multiprocess.py does the same with real server processes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from asgi_ws import BackpressureMiddleware, Rooms, connection_of
from asgi_ws.types import Receive, Scope, Send
from tests.support.asgi import ws_scope
from tests.support.own_servers import own_server
from tests.support.session import Harness

BROKERS = ["redis", "postgres", "nats", "amqp"]
OWN_SERVERS = ["redis", "postgres", "nats"]  # RabbitMQ's faults: tests/brokers/test_amqp.py (a dropped connection)


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def member(rooms: Rooms, room: str = "lobby", **join: Any) -> Harness:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await rooms.join(room, scope, **join)
        await send({"type": "websocket.send", "text": "joined"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return Harness(BackpressureMiddleware(app), ws_scope())


async def joined(harness: Harness) -> Harness:
    await harness.start()
    assert await harness.next_text(10) == "joined"
    return harness


class Cluster:
    def __init__(self, url: str, namespace: str, **options: Any) -> None:
        self.nodes = [Rooms(url, namespace=namespace, presence_interval=0.2, **options) for _ in range(2)]

    async def __aenter__(self) -> list[Rooms]:
        for node in self.nodes:
            await node.start()
        return self.nodes

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes:
            await node.close()


async def test_a_publish_reaches_members_on_every_node(broker_url: str, namespace: str) -> None:
    async with Cluster(broker_url, namespace) as (a, b):
        on_a, on_b = await joined(member(a)), await joined(member(b))
        await asyncio.sleep(0.3)  # the second node's subscription lands asynchronously
        assert await a.publish("lobby", {"from": "a"}) == 1  # local delivery counted
        assert await on_a.next_json() == {"from": "a"}
        assert await on_b.next_json(10) == {"from": "a"}
        await b.publish("lobby", b"\x00binary from b", exclude=connection_of(on_b.scope))
        assert (await on_a.next(10))["bytes"] == b"\x00binary from b"
        assert await on_b.nothing(0.3)  # excluded on its own node
        assert a.stats.received == 1 and b.stats.received == 1  # each got the other's, not its own echo
        for ws in (on_a, on_b):
            await ws.__aexit__(None, None, None)


async def test_presence_across_nodes_and_a_dead_node_expires(broker_url: str, namespace: str) -> None:
    cluster = Cluster(broker_url, namespace)
    a, b = await cluster.__aenter__()
    try:
        on_a = await joined(member(a, meta={"name": "alice"}))
        on_b = await joined(member(b, meta={"name": "bob"}))
        for node in (a, b):
            await eventually(
                lambda node=node: sorted(e.meta["name"] for e in node.members("lobby")) == ["alice", "bob"]
            )
        # b's process dies: no goodbye, its beats stop; a forgets bob after the ttl (3 beats).
        for task in list(b._tasks):
            task.cancel()
        await b.broker.close()
        await eventually(lambda: [e.meta["name"] for e in a.members("lobby")] == ["alice"], timeout=10)
        await on_a.__aexit__(None, None, None)
        await on_b.__aexit__(None, None, None)
    finally:
        b._closed = True
        await a.close()


async def test_a_thousand_members_coming_and_going_leak_nothing(broker_url: str, namespace: str) -> None:
    async with Rooms(broker_url, namespace=namespace) as rooms:
        for i in range(1000):
            ws = await joined(member(rooms, room=f"room-{i % 17}"))
            await ws.__aexit__(None, None, None)
        await eventually(lambda: not rooms._rooms)
        assert rooms._members == {} and rooms._by_id == {}
        assert await rooms.broker.subscription_count() == 1  # the presence channel only


@pytest.mark.parametrize("kind", OWN_SERVERS)
async def test_rooms_survive_a_broker_restart(kind: str) -> None:
    with own_server(kind) as server:
        async with Cluster(server.url, "restart") as (a, b):
            on_b = await joined(member(b))
            await asyncio.sleep(0.3)
            await a.publish("lobby", "before")
            assert await on_b.next_text(10) == "before"
            server.restart()
            await eventually(lambda: a.stats.broker_disconnects >= 1 and b.stats.broker_disconnects >= 1, 30)
            await eventually(lambda: b.stats.broker_lost_seconds > 0, 30)  # reconnected, the window reported

            async def published_after() -> str:
                while True:
                    try:
                        await a.publish("lobby", "after")
                        return await on_b.next_text(1)
                    except (asyncio.TimeoutError, Exception):
                        await asyncio.sleep(0.2)

            assert await asyncio.wait_for(published_after(), 30) == "after"
            await on_b.__aexit__(None, None, None)
