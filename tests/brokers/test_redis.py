"""The Redis broker: the conformance suite (plain and sharded pub/sub) on the machine's Redis, and
the faults (restarts, a frozen server, a cluster) on Redis servers of the tests' own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

from asgi_ws.brokers import broker_from_url
from asgi_ws.brokers.redis import RedisBroker
from asgi_ws.exceptions import BrokerError, ConfigurationError
from tests.brokers.conformance import (
    BrokerConformance,
    HistoryConformance,
    Inbox,
    check_restart_is_survived,
    check_unreachable,
    connected,
)
from tests.support.own_servers import own_server
from tests.support.procs import free_port, wait_for_port


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def unique_prefix() -> str:
    return f"asgi_ws_test_{uuid.uuid4().hex[:12]}:"


class TestRedisBroker(BrokerConformance):
    @pytest.fixture
    def broker_url(self, redis_url: str) -> str:
        return with_query(redis_url, prefix=unique_prefix())


class TestShardedRedisBroker(BrokerConformance):
    @pytest.fixture
    def broker_url(self, redis_url: str) -> str:
        return with_query(redis_url, prefix=unique_prefix(), sharded="1")


def redis_history(url: str, **extra: str) -> Callable[..., str]:
    def history_url(size: int, ttl: float | None = None) -> str:
        age = {"history_ttl": str(ttl)} if ttl is not None else {}
        return with_query(url, prefix=unique_prefix(), history=str(size), **age, **extra)

    return history_url


class TestRedisBrokerHistory(HistoryConformance):
    ages_each_message = False

    @pytest.fixture
    def history_url(self, redis_url: str) -> Callable[..., str]:
        return redis_history(redis_url)


class TestShardedRedisBrokerHistory(HistoryConformance):
    ages_each_message = False

    @pytest.fixture
    def history_url(self, redis_url: str) -> Callable[..., str]:
        return redis_history(redis_url, sharded="1")


# -- configuration and start-up ---------------------------------------------------------------


def test_urls_select_the_redis_broker_and_its_options() -> None:
    plain = broker_from_url("redis://localhost")
    assert isinstance(plain, RedisBroker) and not plain.sharded and plain.ping_interval == 30
    sharded = broker_from_url("rediss://u:pw@host:6380/0?sharded=true&prefix=app:&health_check_interval=2.5")
    assert isinstance(sharded, RedisBroker) and sharded.sharded and sharded.ping_interval == 2.5
    assert sharded.safe_url == "rediss://u:***@host:6380/0?sharded=true&prefix=app:&health_check_interval=2.5"
    for bad in ("redis://h?sharded=maybe", "redis://h?health_check_interval=-1", "redis://h?socket_timeout=soon"):
        with pytest.raises(ConfigurationError, match="invalid Redis broker URL"):
            broker_from_url(bad)


async def test_unreachable_redis_is_reported_without_the_password() -> None:
    port = free_port()  # nothing listens there
    await check_unreachable(f"redis://127.0.0.1:{port}/0")
    await check_unreachable(f"redis://:s3cret-pw@127.0.0.1:{port}/0", password="s3cret-pw")
    await check_unreachable(f"rediss://alice:s3cret-pw@127.0.0.1:{port}/0?sharded=1", password="s3cret-pw")


async def test_a_refused_password_is_reported_without_it(redis_url: str) -> None:
    # The shared Redis has no password: AUTH fails, and the error must not echo the password.
    await check_unreachable(redis_url.replace("redis://", "redis://nobody:wr0ng-pw@"), password="wr0ng-pw")


# -- behaviour on the machine's Redis ----------------------------------------------------------


@pytest.mark.parametrize("sharded", ["0", "1"])
async def test_channels_are_prefixed_in_redis(redis_url: str, sharded: str) -> None:
    prefix = unique_prefix()
    redis_name = f"{{{prefix}}}room" if sharded == "1" else f"{prefix}room"
    raw = aioredis.Redis.from_url(redis_url)
    pubsub = raw.pubsub()
    try:
        await (pubsub.ssubscribe if sharded == "1" else pubsub.subscribe)(redis_name)
        async with connected(with_query(redis_url, prefix=prefix, sharded=sharded)) as (broker, inbox):
            await broker.subscribe("room")
            await broker.publish("room", b"from the broker")
            message = None
            for _ in range(50):  # redis-py's asyncio PubSub returns sharded messages here too
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message:
                    break
            assert message is not None and message["channel"] == redis_name.encode()
            assert message["data"] == b"from the broker"
            publish = raw.spublish if sharded == "1" else raw.publish
            await publish("room", b"unprefixed: not ours")
            await publish(redis_name, b"from another client")
            assert await inbox.wait_count("room", 2) == [b"from the broker", b"from another client"]
    finally:
        await pubsub.aclose()
        await raw.aclose()


async def test_a_long_idle_spell_stalls_nothing(redis_url: str) -> None:
    """channels_redis read with redis-py's 5 s socket timeout and then delivered nothing."""
    url = with_query(redis_url, prefix=unique_prefix())
    pinging = with_query(url, health_check_interval="1")  # PINGs and PONGs meanwhile
    async with connected(url) as (quiet, quiet_inbox), connected(pinging) as (chatty, chatty_inbox):
        await quiet.subscribe("idle")
        await chatty.subscribe("idle")
        await asyncio.sleep(7)
        await quiet.publish("idle", b"still there")
        assert await quiet_inbox.wait_count("idle", 1, timeout=2) == [b"still there"]
        assert await chatty_inbox.wait_count("idle", 1, timeout=2) == [b"still there"]
        assert quiet_inbox.events == chatty_inbox.events == []
        assert await chatty.subscription_count() == 1


async def test_a_failing_deliver_callback_does_not_stop_the_reader(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[bytes] = []

    def deliver(channel: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("application bug")
        got.append(payload)

    broker = broker_from_url(with_query(redis_url, prefix=unique_prefix()))
    await broker.connect(deliver)
    try:
        await broker.subscribe("c")
        await broker.publish("c", b"boom")
        await broker.publish("c", b"fine")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [b"fine"]
        assert "delivering a message of channel 'c' failed" in caplog.text
    finally:
        await broker.close()


# -- faults, on servers of our own --------------------------------------------------------------


@pytest.mark.parametrize("sharded", ["0", "1"])
async def test_a_restart_is_survived(sharded: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_ws.brokers.redis")
    with own_server("redis") as server:
        url = with_query(server.url, sharded=sharded)
        events = await check_restart_is_survived(SimpleNamespace(url=url, restart=server.restart))
    assert [e.kind for e in events] == ["disconnected", "reconnected"]
    assert events[0].error and events[0].url == url
    warnings = [r.getMessage() for r in caplog.records if r.name == "asgi_ws.brokers.redis"]
    assert any(m.startswith("lost the connection to Redis") for m in warnings)
    assert any(m.startswith("reconnected to Redis") and "may be lost" in m for m in warnings)


async def test_during_an_outage_publish_fails_fast_and_subscribe_waits_for_the_return() -> None:
    with own_server("redis") as server:
        async with connected(server.url) as (broker, inbox):
            await broker.subscribe("before")
            server.kill()
            await inbox.wait_for(lambda: [e.kind for e in inbox.events] == ["disconnected"])
            started = time.monotonic()
            with pytest.raises(BrokerError, match=r"could not publish to Redis at redis://127\.0\.0\.1"):
                await broker.publish("before", b"lost")
            assert time.monotonic() - started < 2
            with pytest.raises(BrokerError, match="reconnecting"):
                await broker.subscription_count()
            await broker.subscribe("during")  # recorded now, made on reconnection
            server.start()
            await inbox.wait_for(lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"], 30)
            assert await broker.subscription_count() == 2
            await broker.publish("during", b"made it")
            assert await inbox.wait_count("during", 1) == [b"made it"]


async def test_a_frozen_server_is_detected_by_the_keepalive() -> None:
    """SIGSTOP keeps the TCP connection open but silent: only the PINGs can tell."""
    with own_server("redis") as server:
        assert server.proc is not None
        url = with_query(server.url, health_check_interval="0.5", socket_timeout="1")
        async with connected(url) as (broker, inbox):
            await broker.subscribe("frozen")
            server.proc.send_signal(signal.SIGSTOP)
            try:
                await inbox.wait_for(lambda: bool(inbox.events), 5)
                assert inbox.events[0].kind == "disconnected"
                assert inbox.events[0].error == "no reply to PING within 0.5 s"
            finally:
                server.proc.send_signal(signal.SIGCONT)
            await inbox.wait_for(lambda: inbox.events[-1].kind == "reconnected", 30)
            await broker.publish("frozen", b"thawed")
            assert await inbox.wait_count("frozen", 1) == [b"thawed"]


@contextlib.contextmanager
def own_cluster() -> Iterator[list[str]]:
    """Three masters sharing the 16384 slots; yields their URLs."""
    ports = [free_port() for _ in range(3)]
    bus_ports = [free_port() for _ in range(3)]  # not port + 10000, which may be past 65535
    folder = tempfile.mkdtemp(prefix="asgi_ws_cluster_")
    procs = []
    for port, bus_port in zip(ports, bus_ports, strict=True):
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--cluster-port", str(bus_port)]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", f"{folder}/nodes-{port}.conf"]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def cli(port: int, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True).stdout

    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_port(port, proc=proc)
        for port, (first, last) in zip(ports, [(0, 5460), (5461, 10922), (10923, 16383)], strict=True):
            cli(port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for port in ports[1:]:
            cli(ports[0], "CLUSTER", "MEET", "127.0.0.1", str(port), str(bus_ports[ports.index(port)]))
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") for p in ports):
            assert time.monotonic() < deadline, "the test cluster did not form"
            time.sleep(0.05)
        yield [f"redis://127.0.0.1:{port}/0" for port in ports]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


async def test_redis_cluster_in_both_modes() -> None:
    with own_cluster() as urls:
        for sharded in ("1", "0"):
            prefix = unique_prefix()
            # Different entry nodes: in sharded mode both follow MOVED to the node of the slot.
            subscriber_url, publisher_url = (with_query(u, prefix=prefix, sharded=sharded) for u in urls[:2])
            async with connected(subscriber_url) as (subscriber, inbox), connected(publisher_url) as (publisher, _):
                await subscriber.subscribe("room")
                await asyncio.sleep(0.1)  # plain PUBLISH crosses the cluster bus
                for i in range(20):
                    await publisher.publish("room", str(i).encode())
                got = await inbox.wait_count("room", 20)
                assert got == [str(i).encode() for i in range(20)]
                assert await subscriber.subscription_count() == 1


async def test_the_reader_keeps_going_after_its_deliver_is_replaced(redis_url: str) -> None:
    # connect() twice (as Rooms may after a failed start) swaps the callbacks, keeps one reader.
    broker = broker_from_url(with_query(redis_url, prefix=unique_prefix()))
    first, second = Inbox(), Inbox()
    await broker.connect(first.deliver)
    try:
        await broker.connect(second.deliver, second.on_event)
        await broker.subscribe("c")
        await broker.publish("c", b"x")
        assert await second.wait_count("c", 1) == [b"x"]
        assert first.messages["c"] == []
    finally:
        await broker.close()
