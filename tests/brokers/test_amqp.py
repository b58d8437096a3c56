"""The AMQP broker: the conformance suite on the machine's RabbitMQ (with and without publisher
confirms), then what only AMQP has: the routing keys, the exchange and bindings as RabbitMQ shows
them, and faults. A dropped connection is this test's own connection closed by RabbitMQ
(``rabbitmqctl close_connection``, found by its connection name: the server is shared); an
outage held for a while goes through a TCP proxy of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ws.brokers import broker_from_url
from asgi_ws.brokers.amqp import MAX_ROUTING_KEY, AmqpBroker, routing_key
from asgi_ws.exceptions import BrokerError, BrokerUnavailable, ConfigurationError
from tests.brokers.conformance import BrokerConformance, Inbox, check_unreachable, connected, unescape_token
from tests.rooms.test_rooms_brokers import Cluster, joined, member
from tests.support.procs import free_port

LOGGER = "asgi_ws.brokers.amqp"


def unique(url: str, query: str = "") -> str:
    """``url`` with an exchange and a connection name of its own: tests never see each other's
    messages on the shared server, and a fault test closes only its own connections."""
    tag = uuid.uuid4().hex[:12]
    return f"{url}?exchange=asgi_ws_test.{tag}&name=asgi_ws-test-{tag}{query}"


def name_of(url: str) -> str:
    match = re.search(r"[?&]name=([^&]+)", url)
    assert match, url
    return match.group(1)


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def close_connections(name: str) -> int:
    """Have RabbitMQ close the connections whose client-given name is ``name``; how many."""
    rows = rabbitmqctl("--no-table-headers", "list_connections", "pid", "client_properties").splitlines()
    pids = [row.split("\t")[0] for row in rows if f'{{"connection_name","{name}"}}' in row]
    for pid in pids:
        rabbitmqctl("close_connection", pid, "test")
    return len(pids)


def bindings_of(exchange: str) -> list[tuple[str, str]]:
    """(queue, routing key) of every binding from ``exchange``, as RabbitMQ lists them."""
    rows = json.loads(
        rabbitmqctl("list_bindings", "source_name", "destination_name", "routing_key", "--formatter", "json") or "[]"
    )
    return sorted((row["destination_name"], row["routing_key"]) for row in rows if row["source_name"] == exchange)


@pytest.fixture
async def fresh(amqp_url: str) -> AsyncIterator[Callable[..., str]]:
    """``fresh(query)``: a URL of the machine's RabbitMQ with an exchange of its own (see
    :func:`unique`); the exchanges, durable on purpose, are deleted after the test."""
    made: list[str] = []

    def make(query: str = "") -> str:
        made.append(unique(amqp_url, query))
        return made[-1]

    yield make
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for url in made:
            await channel.exchange_delete(AmqpBroker(url).exchange)


class TestAmqpBroker(BrokerConformance):
    @pytest.fixture
    def broker_url(self, fresh: Callable[..., str]) -> str:
        return fresh()


class TestAmqpBrokerWithoutConfirms(BrokerConformance):
    @pytest.fixture
    def broker_url(self, fresh: Callable[..., str]) -> str:
        return fresh("&confirm=0")


# -- routing keys -------------------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z0-9_-]+|~[0-9a-f]{64}")  # one topic word, never * or #


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(exclude_categories=()), min_size=1, max_size=256))
def test_every_channel_name_maps_to_one_topic_word_of_at_most_255_bytes(name: str) -> None:
    key = routing_key(name)
    assert WORD.fullmatch(key) and len(key.encode()) <= MAX_ROUTING_KEY
    if not key.startswith("~"):
        assert unescape_token(key) == name  # decodable, so distinct names never share a key


@given(st.text(min_size=1, max_size=120), st.text(min_size=1, max_size=120))
def test_distinct_names_get_distinct_keys(a: str, b: str) -> None:
    assert (routing_key(a) == routing_key(b)) == (a == b)


def test_keys_stay_readable_and_long_names_are_hashed() -> None:
    assert routing_key("room-42") == "room-42"
    assert routing_key("a.b") == "a_2Eb"
    assert routing_key("a_2Eb") == "a_5F2Eb"
    assert routing_key("news.*.#") == "news_2E_2A_2E_23"
    assert routing_key("x" * 255) == "x" * 255
    assert routing_key("x" * 256).startswith("~") and len(routing_key("x" * 256)) == 65
    assert routing_key("房" * 30).startswith("~")  # 90 bytes, 270 once escaped: over 255
    assert routing_key("房" * 28).startswith("_E6_88_BF") and len(routing_key("房" * 28)) == 252


# -- URLs ---------------------------------------------------------------------------------------


def test_url_forms_and_options() -> None:
    broker = broker_from_url("amqp://app:p%40ss@rabbit:5673/vh?exchange=chat&confirm=0&timeout=2.5&heartbeat=30")
    assert isinstance(broker, AmqpBroker)
    assert (broker.exchange, broker.confirm, broker.timeout) == ("chat", False, 2.5)
    assert broker.safe_url == "amqp://app:***@rabbit:5673/vh?exchange=chat&confirm=0&timeout=2.5&heartbeat=30"
    assert "heartbeat=30" in broker._amqp_url and "exchange" not in broker._amqp_url
    default = AmqpBroker("amqps://rabbit")
    assert (default.exchange, default.confirm, default.max_message) == ("asgi_ws", True, 16 * 1024 * 1024)
    assert "heartbeat=10" in default._amqp_url and "name=asgi_ws+pid+" in default._amqp_url
    bad = ["amqp://h?exchange=", "amqp://h?exchange=amq.topic", "amqp://h?confirm=maybe", "amqp://h?timeout=0"]
    bad += ["amqp://h?max_message=big", "amqp://h?queue_max_length=0", "amqp://h?queue_max_bytes=10&max_message=20"]
    for url in bad:
        with pytest.raises(ConfigurationError, match="invalid AMQP broker URL"):
            AmqpBroker(url)
    with pytest.raises(ConfigurationError, match="keeps no history"):
        AmqpBroker("amqp://h?history=100")


async def test_no_history_is_said_plainly(fresh: Callable[..., str]) -> None:
    async with connected(fresh()) as (broker, _):
        assert broker.history_size == 0
        with pytest.raises(BrokerError, match=r"no history \(memory://, redis://, postgres:// and nats:// do"):
            await broker.history("room", "0-0")
        with pytest.raises(BrokerError, match="keeps no history"):
            await broker.last_position("room")


# -- start-up -----------------------------------------------------------------------------------


async def test_an_unreachable_server_fails_fast_without_secrets() -> None:
    port = free_port()
    started = time.monotonic()
    await check_unreachable(f"amqp://alice:s3cret-pw@127.0.0.1:{port}/", password="s3cret-pw")
    await check_unreachable(f"amqps://alice:s3cret-pw@127.0.0.1:{port}/?exchange=x", password="s3cret-pw")
    assert time.monotonic() - started < 15


async def test_a_refused_password_is_reported_without_it(amqp_url: str) -> None:
    await check_unreachable(amqp_url.replace("guest:guest@", "guest:wr0ng-pw@"), password="wr0ng-pw")


async def test_an_exchange_of_another_type_is_refused_clearly(amqp_url: str, fresh: Callable[..., str]) -> None:
    url = fresh()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(AmqpBroker(url).exchange, aio_pika.ExchangeType.FANOUT, durable=True)
    broker = broker_from_url(url)
    with pytest.raises(BrokerUnavailable, match=r"PRECONDITION_FAILED.*inequivalent arg 'type'"):
        await broker.connect(lambda c, p: None)
    await broker.close()


# -- what RabbitMQ sees -------------------------------------------------------------------------


async def test_bindings_follow_subscriptions_and_leave_with_the_broker(fresh: Callable[..., str]) -> None:
    url = fresh()
    exchange = AmqpBroker(url).exchange
    async with connected(url) as (broker, inbox):
        assert isinstance(broker, AmqpBroker)
        for name in ("lobby", "a.b", "x" * 256):
            await broker.subscribe(name)
        await broker.unsubscribe("lobby")
        for i in range(200):
            await broker.subscribe(f"cycle-{i % 7}")
            await broker.unsubscribe(f"cycle-{i % 7}")
        # Racing changes of one channel end as the last one asked.
        await asyncio.gather(broker.subscribe("race"), broker.unsubscribe("race"), broker.subscribe("race"))
        await asyncio.gather(broker.unsubscribe("raced"), broker.subscribe("raced"), broker.unsubscribe("raced"))
        assert await broker.subscription_count() == 3
        queue = broker._link.queue.name if broker._link and broker._link.queue else ""
        assert queue.startswith("amq.gen-")
        wanted = sorted((queue, routing_key(name)) for name in ("a.b", "x" * 256, "race"))
        assert bindings_of(exchange) == wanted  # counted by RabbitMQ, not by us
    assert bindings_of(exchange) == []  # the exclusive queue went with the connection


async def test_a_plain_amqp_client_shares_the_exchange(amqp_url: str, fresh: Callable[..., str]) -> None:
    url = fresh()
    exchange_name = AmqpBroker(url).exchange
    connection = await aio_pika.connect(amqp_url)
    async with connection, connected(url) as (broker, inbox):
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name)
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(exchange, "#")  # every room of the app
        await broker.subscribe("room 1")
        await broker.publish("room 1", b"from asgi_ws")
        for _ in range(100):  # basic.get polls: the message may still be on its way
            message = await tap.get(timeout=5, fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the tap queue got nothing within 5 s")
        assert (message.routing_key, message.body) == ("room_201", b"from asgi_ws")
        await exchange.publish(aio_pika.Message(b"from elsewhere"), routing_key=routing_key("room 1"))
        got = await inbox.wait_count("room 1", 2)
        assert got == [b"from asgi_ws", b"from elsewhere"]


async def test_large_payloads_up_to_max_message(fresh: Callable[..., str]) -> None:
    sizes = [8 * 1024 * 1024, 12 * 1024 * 1024 + 1, 16 * 1024 * 1024]  # the last one: max_message exactly
    payloads = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    async with connected(fresh()) as (broker, inbox):
        await broker.subscribe("big")
        for payload in payloads:
            await broker.publish("big", payload)
        got = await inbox.wait_count("big", len(sizes), timeout=30)
        assert [len(payload) for payload in got] == sizes and got == payloads
        with pytest.raises(ValueError, match="max_message"):
            await broker.publish("big", bytes(16 * 1024 * 1024 + 1))
    async with connected(fresh("&max_message=1000")) as (broker, _):
        await broker.publish("small", bytes(1000))
        with pytest.raises(ValueError, match="over max_message=1000"):
            await broker.publish("small", bytes(1001))


# -- faults -------------------------------------------------------------------------------------


async def until(inbox: Inbox, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    try:
        await inbox.wait_for(predicate, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s (events: {inbox.events})") from None


async def test_a_connection_closed_by_rabbitmq_is_survived_and_reported(
    fresh: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    url = fresh()
    exchange = AmqpBroker(url).exchange
    async with connected(url) as (broker, inbox):
        for name in ("survivor", "other", "x" * 256):
            await broker.subscribe(name)
        await broker.publish("survivor", b"before")
        await inbox.wait_count("survivor", 1)
        before = bindings_of(exchange)
        assert await asyncio.to_thread(close_connections, name_of(url)) == 1  # this test's connection only
        await until(inbox, lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"], "reconnection")
        assert "CONNECTION_FORCED" in (inbox.events[0].error or "")
        assert inbox.events[1].lost_seconds is not None and inbox.events[1].lost_seconds >= 0
        # A new queue, every binding restored, and the next publish delivered.
        after = bindings_of(exchange)
        assert [key for _, key in after] == [key for _, key in before] and after[0][0] != before[0][0]
        assert await broker.subscription_count() == 3
        await broker.publish("survivor", b"after")
        assert await inbox.wait_count("survivor", 2) == [b"before", b"after"]
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(logged) == 2 and "lost the connection" in logged[0] and "3 binding(s) restored" in logged[1]


class Proxy:
    """A TCP proxy to the machine's RabbitMQ on a port of its own: ``cut()`` drops every
    connection through it, ``refusing`` makes it close new ones at once (an outage held for as
    long as the test wants), ``frozen`` stops it forwarding anything (a peer gone silent)."""

    def __init__(self, target_port: int = 5672) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.refusing = False
        self.frozen = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for each in (writer, up_writer):
            each.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            while self.frozen:
                await asyncio.sleep(0.05)
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


async def test_an_outage_fails_publishes_fast_and_restores_the_bindings_wanted_meanwhile(
    fresh: Callable[..., str],
) -> None:
    url = fresh()
    exchange = AmqpBroker(url).exchange
    async with Proxy() as proxy:
        async with connected(url.replace(":5672/", f":{proxy.port}/")) as (broker, inbox):
            await broker.subscribe("kept")
            await broker.subscribe("dropped")
            proxy.refusing = True
            proxy.cut()
            await until(inbox, lambda: [e.kind for e in inbox.events] == ["disconnected"], "the loss being reported")
            with pytest.raises(BrokerError, match="reconnecting"):
                await broker.publish("kept", b"during")  # at once: nothing is buffered
            with pytest.raises(BrokerError, match="reconnecting"):
                await broker.subscription_count()
            await broker.subscribe("added")  # returns at once: made on reconnection
            await broker.unsubscribe("dropped")
            await asyncio.sleep(1.0)  # several attempts fail meanwhile: reconnection never gives up
            proxy.refusing = False
            await until(inbox, lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"], "return")
            assert (inbox.events[1].lost_seconds or 0) >= 1.0
            assert [key for _, key in bindings_of(exchange)] == ["added", "kept"]
            for name in ("kept", "dropped", "added"):
                await broker.publish(name, name.encode())
            await inbox.wait_count("added", 1)
            assert (inbox.messages["kept"], inbox.messages["dropped"]) == ([b"kept"], [])


async def test_a_silent_peer_is_detected_by_heartbeats(fresh: Callable[..., str]) -> None:
    url = fresh("&heartbeat=1")  # aiormq gives up after 3 heartbeat intervals (+1 s each) without a frame
    async with Proxy() as proxy:
        async with connected(url.replace(":5672/", f":{proxy.port}/")) as (broker, inbox):
            await broker.subscribe("quiet")
            proxy.frozen = True
            await until(inbox, lambda: [e.kind for e in inbox.events] == ["disconnected"], "heartbeat loss", 20)
            proxy.frozen = False
            proxy.cut()
            await until(inbox, lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"], "return")
            await broker.publish("quiet", b"heard again")
            assert await inbox.wait_count("quiet", 1) == [b"heard again"]


async def test_close_during_an_outage_is_quiet_and_leaves_no_task(fresh: Callable[..., str]) -> None:
    async with Proxy() as proxy:
        async with connected(fresh().replace(":5672/", f":{proxy.port}/")) as (broker, inbox):
            await broker.subscribe("lost")
            proxy.refusing = True
            proxy.cut()
            await until(inbox, lambda: bool(inbox.events), "the loss being reported")
        await asyncio.sleep(0.1)
    left = [t for t in asyncio.all_tasks() if "amqp" in t.get_name() or "/aiormq/" in t.get_coro().cr_code.co_filename]  # type: ignore[union-attr]
    assert left == []


async def test_rooms_on_two_nodes_survive_their_connections_being_closed(fresh: Callable[..., str]) -> None:
    url = fresh()
    async with Cluster(url, "dropped") as (a, b):
        on_b = await joined(member(b))
        await a.publish("lobby", "before")
        assert await on_b.next_text(10) == "before"
        assert await asyncio.to_thread(close_connections, name_of(url)) == 2  # both nodes' (one name)

        async def reconnected() -> None:
            while not (a.stats.broker_lost_seconds > 0 and b.stats.broker_lost_seconds > 0):
                await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(reconnected(), 20)
        except asyncio.TimeoutError:
            raise AssertionError("both nodes reconnected, with the loss window counted: not within 20 s") from None
        assert a.stats.broker_disconnects == 1 and b.stats.broker_disconnects == 1
        await a.publish("lobby", "after")  # the room's binding is back on b's new queue
        assert await on_b.next_text(10) == "after"
        await on_b.__aexit__(None, None, None)
