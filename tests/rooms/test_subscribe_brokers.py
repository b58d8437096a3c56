"""Rooms.subscribe on the five brokers (memory, Redis, PostgreSQL, NATS, RabbitMQ): every
publish of every node in order, ``exclude``, a slow subscription, cancellation leaving no broker
subscription; ``after=`` on the four that keep history (a seam under concurrent publishing, a
trimmed history); and a subscription fed by another OS process."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from asgi_ws import Rooms
from asgi_ws.rooms import HistoryGap, SubscriptionOverflow
from tests.brokers.test_nats import delete_streams
from tests.brokers.test_postgres import drop_tables
from tests.rooms.test_subscribe import WAIT, consecutive, data, left_nothing, take, until
from tests.support.procs import ROOT

KINDS = ["memory", "redis", "postgres", "nats", "amqp"]
HISTORY_KINDS = ["memory", "redis", "postgres", "nats"]

Url = Callable[..., str]


async def broker_urls(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Url]:
    """``url(history=0)``: a URL of ``kind`` of this test's own (a prefix), cleaned up after."""
    if kind == "memory":
        yield lambda history=0: f"memory://?history={history}"
        return
    base = request.getfixturevalue(f"{kind}_url")
    tag = uuid.uuid4().hex[:10]
    prefix = {"redis": f"sub-{tag}:", "postgres": f"s{tag}_", "nats": f"asgi_ws_test.s{tag}", "amqp": ""}[kind]
    extra = "&history_storage=memory" if kind == "nats" else ""

    def url(history: int = 0) -> str:
        query = [f"prefix={prefix}"] if prefix else []
        if history:
            query.append(f"history={history}{extra}")
        return f"{base}?{'&'.join(query)}" if query else base

    yield url
    if kind == "postgres":
        await drop_tables(base, prefix)
    elif kind == "nats":
        await delete_streams(base, prefix)


@pytest.fixture(params=KINDS)
async def any_url(request: pytest.FixtureRequest) -> AsyncIterator[Url]:
    async for url in broker_urls(request.param, request):
        yield url


@pytest.fixture(params=HISTORY_KINDS)
async def history_url(request: pytest.FixtureRequest) -> AsyncIterator[Url]:
    async for url in broker_urls(request.param, request):
        yield url


class Nodes:
    """Two Rooms instances on one broker, as two worker processes (one on memory://: it shares nothing)."""

    def __init__(self, url: str) -> None:
        namespace = f"s{uuid.uuid4().hex[:10]}"
        count = 1 if url.startswith("memory:") else 2
        self.nodes = [Rooms(url, namespace=namespace, presence_interval=0.5) for _ in range(count)]

    async def __aenter__(self) -> tuple[Rooms, Rooms]:
        for node in self.nodes:
            await node.start()
        return self.nodes[0], self.nodes[-1]

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes:
            await node.close()


async def confirmed(rooms: Rooms) -> None:
    """Once this returns, the server has the subscriptions ``rooms`` made: Redis, PostgreSQL's
    LISTEN and RabbitMQ's bindings are confirmed before subscribe() returns; NATS sends a SUB
    without an answer, so a PING's PONG, which follows it, is waited for."""
    nc = getattr(rooms.broker, "_nc", None)
    if nc is not None:
        await asyncio.wait_for(nc.flush(), WAIT)


async def test_a_subscription_gets_every_publish_of_every_node_in_order(any_url: Url) -> None:
    async with Nodes(any_url()) as (a, b):
        async with a.subscribe("lobby") as on_a, b.subscribe("lobby") as on_b:
            await confirmed(a)
            await confirmed(b)
            for i in range(50):
                await b.publish("lobby", {"i": i})
            await a.publish("lobby", "not to on_a", exclude=on_a)
            await a.publish("lobby", b"\x00marker")
            got = data(await take(on_a, 51))  # a's own publish is handed over at once, b's come through the broker
            assert [m for m in got if m != b"\x00marker"] == [{"i": i} for i in range(50)] and b"\x00marker" in got
            assert data(await take(on_b, 52)) == [*({"i": i} for i in range(50)), "not to on_a", b"\x00marker"]
        for node in (a, b):
            await until(lambda node=node: left_nothing(node), "the nodes' room states left")
            assert await node.broker.subscription_count() == 1  # the presence channel only


async def test_a_slow_subscription_keeps_the_newest_and_the_room_goes_on(any_url: Url) -> None:
    async with Nodes(any_url()) as (a, b), a.subscribe("lobby", max_messages=5) as slow:
        async with a.subscribe("lobby") as keeping_up:
            await confirmed(a)
            for i in range(30):
                await b.publish("lobby", i)
            assert data(await take(keeping_up, 30)) == list(range(30))
        await until(lambda: slow.dropped == 25, f"25 dropped (dropped {slow.dropped})")
        assert data(await take(slow, 5)) == list(range(25, 30))


async def test_cancelled_readers_leave_no_broker_subscription(any_url: Url) -> None:
    async with Nodes(any_url()) as (a, b):
        reading = asyncio.Event()

        async def read(room: str) -> None:
            async with a.subscribe(room) as sub:
                reading.set()
                async for _ in sub:
                    pass

        readers = [asyncio.create_task(read(f"room-{i % 3}")) for i in range(12)]
        await asyncio.wait_for(reading.wait(), WAIT)
        await b.publish("room-0", "x")
        for reader in readers:
            reader.cancel()
        await asyncio.wait(readers, timeout=WAIT)
        assert all(reader.done() for reader in readers)
        await until(lambda: left_nothing(a), "the room states left")
        assert await a.broker.subscription_count() == 1


# -- history ----------------------------------------------------------------------------------------


async def test_after_replays_the_broker_history_then_goes_on_live_across_a_seam_under_load(history_url: Url) -> None:
    async with Nodes(history_url(1000)) as (a, b):
        positions = []
        for i in range(30):
            await b.publish("lobby", i)
            positions.append(await b.broker.last_position(f"{b.namespace}:lobby"))

        async def publish_meanwhile() -> None:
            for i in range(30, 90):
                await b.publish("lobby", i)
                await asyncio.sleep(0)

        publisher = asyncio.create_task(publish_meanwhile())
        await asyncio.sleep(0)  # it has started
        async with a.subscribe("lobby", after=positions[9]) as sub:
            got = await take(sub, 80, "the replay and the live messages")
        await asyncio.wait_for(publisher, WAIT)
        assert data(got) == list(range(10, 90)), [(m.data, m.position) for m in got]
        assert consecutive(got, after=positions[9])


async def test_after_a_trimmed_position_is_a_history_gap(history_url: Url) -> None:
    async with Nodes(history_url(5)) as (a, b):
        positions = []
        for i in range(250):  # Redis trims by whole stream nodes (MAXLEN ~): some 100 entries at a time
            await b.publish("lobby", i)
            positions.append(await b.broker.last_position(f"{b.namespace}:lobby"))
        with pytest.raises(HistoryGap):
            async with a.subscribe("lobby", after=positions[0]):
                raise AssertionError("entered")
        assert left_nothing(a)
        async with a.subscribe("lobby", after=positions[-4]) as sub:
            assert data(await take(sub, 3)) == [247, 248, 249]


async def test_an_overflowing_subscription_resumes_from_its_position_with_nothing_lost(history_url: Url) -> None:
    async with Nodes(history_url(1000)) as (a, b):
        async with a.subscribe("lobby", max_messages=5, policy="close") as slow:
            for i in range(30):
                await b.publish("lobby", i)
            await until(lambda: slow._failure is not None, "the subscription overflowed")
            with pytest.raises(SubscriptionOverflow) as raised:
                await anext(slow)
        position = raised.value.position
        assert position is not None
        async with a.subscribe("lobby", after=position) as again:
            got = await take(again, 30)
            assert data(got) == list(range(30)) and consecutive(got, after=position)


# -- another OS process -------------------------------------------------------------------------------

PUBLISHER = """
import asyncio, os, sys
from asgi_ws import Rooms

async def main(url, namespace, count):
    async with Rooms(url, namespace=namespace, presence=False) as rooms:
        for i in range(int(count)):
            await rooms.publish("lobby", {"i": i, "pid": os.getpid()})

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("kind", ["redis", "postgres", "nats", "amqp"])
async def test_a_subscription_gets_what_another_process_publishes(kind: str, request: pytest.FixtureRequest) -> None:
    async for url in broker_urls(kind, request):
        broker = url(1000) if kind in HISTORY_KINDS else url()
        async with Nodes(broker) as (a, _), a.subscribe("lobby") as sub:
            start = sub.position  # with history: the room's position when it was subscribed
            await confirmed(a)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISHER, broker, a.namespace, "20", env=env
            )
            assert await asyncio.wait_for(child.wait(), 60) == 0, "the publishing process failed"
            got = await take(sub, 20, "the other process's publishes")
            assert [m.data["i"] for m in got] == list(range(20))
            assert {m.data["pid"] for m in got} == {child.pid} != {os.getpid()}
            if kind in HISTORY_KINDS:
                assert start is not None and consecutive(got, after=start)
