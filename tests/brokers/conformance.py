"""The behaviour every broker must have (see asgi_ws/brokers/base.py), as one reusable test class.

A broker's test module subclasses :class:`BrokerConformance` and provides a ``broker_url``
fixture; every test here then runs against that broker. Nothing is copied per broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import pytest

from asgi_ws.brokers import Broker, BrokerEvent, broker_from_url
from asgi_ws.brokers.base import START, position_key
from asgi_ws.brokers.history import previous
from asgi_ws.exceptions import BrokerClosed, BrokerUnavailable


class Inbox:
    """Collects what a broker delivers; lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self.positions: dict[str, list[str | None]] = defaultdict(list)
        self.events: list[BrokerEvent] = []
        self._changed = asyncio.Event()

    def deliver(self, channel: str, payload: bytes, position: str | None = None) -> None:
        self.messages[channel].append(payload)
        self.positions[channel].append(position)
        self._changed.set()

    def on_event(self, event: BrokerEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_count(self, channel: str, count: int, timeout: float = 10.0) -> list[bytes]:
        await self.wait_for(lambda: len(self.messages[channel]) >= count, timeout)
        return self.messages[channel]


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[tuple[Broker, Inbox]]:
    broker = broker_from_url(url)
    inbox = Inbox()
    await broker.connect(inbox.deliver, inbox.on_event)
    try:
        yield broker, inbox
    finally:
        await broker.close()


ODD_NAMES = [
    "lobby",
    "room with spaces",
    "ünïcødé-房间",
    "a.b*c>d",
    "UPPER/lower:colon",
    "quote'\"backslash\\",
    "x" * 256,
]


def unescape_token(token: str) -> str:
    """The channel name of a token escaped as the NATS subjects and AMQP routing keys are
    (``A-Z a-z 0-9 -`` kept, any other UTF-8 byte ``_XX``): what makes the mapping injective."""
    data, i = bytearray(), 0
    while i < len(token):
        if token[i] == "_":
            data.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            data.append(ord(token[i]))
            i += 1
    return data.decode("utf-8", "surrogatepass")


class BrokerConformance:
    """Subclass it in a broker's test module and provide the ``broker_url`` fixture."""

    #: False for brokers that do not share messages between instances (memory://).
    shared_between_instances: ClassVar[bool] = True
    #: Largest payload the suite checks (bytes).
    large_payload: ClassVar[int] = 1_000_000

    async def test_publish_reaches_the_subscriber_in_order(self, broker_url: str) -> None:
        async with connected(broker_url) as (broker, inbox):
            await broker.subscribe("ordered")
            for i in range(200):
                await broker.publish("ordered", str(i).encode())
            got = await inbox.wait_count("ordered", 200)
            assert got == [str(i).encode() for i in range(200)]

    async def test_unsubscribe_stops_delivery(self, broker_url: str) -> None:
        async with connected(broker_url) as (broker, inbox):
            await broker.subscribe("gone")
            await broker.subscribe("marker")
            await broker.publish("gone", b"1")
            await inbox.wait_count("gone", 1)
            await broker.unsubscribe("gone")
            await broker.publish("gone", b"2")
            await broker.publish("marker", b"after")  # delivered after "2" would have been
            await inbox.wait_count("marker", 1)
            assert inbox.messages["gone"] == [b"1"]

    async def test_binary_and_large_payloads_arrive_intact(self, broker_url: str) -> None:
        sizes = [0, 1, 7_999, 8_000, 8_001, 100_000, self.large_payload]
        payloads = [bytes((i * 7 + n) % 256 for i in range(n)) for n in sizes]
        async with connected(broker_url) as (broker, inbox):
            await broker.subscribe("binary")
            for payload in payloads:
                await broker.publish("binary", payload)
            got = await inbox.wait_count("binary", len(payloads), timeout=30)
            assert [len(p) for p in got] == sizes
            assert got == payloads

    async def test_any_channel_name_up_to_256_characters(self, broker_url: str) -> None:
        async with connected(broker_url) as (broker, inbox):
            for name in ODD_NAMES:
                await broker.subscribe(name)
            for name in ODD_NAMES:
                await broker.publish(name, name.encode())
            for name in ODD_NAMES:
                assert await inbox.wait_count(name, 1) == [name.encode()]
            for bad in ("", "x" * 257):
                with pytest.raises(ValueError):
                    await broker.subscribe(bad)

    async def test_channels_do_not_mix_even_when_their_encodings_might(self, broker_url: str) -> None:
        # Brokers that encode names (hashing, escaping) must keep distinct names distinct.
        names = ["a.b", "a_b", "a b", "a-b", "A.B", "a/b"]
        async with connected(broker_url) as (broker, inbox):
            for name in names:
                await broker.subscribe(name)
            for name in names:
                await broker.publish(name, name.encode())
            for name in names:
                assert await inbox.wait_count(name, 1) == [name.encode()]
            await asyncio.sleep(0.2)
            assert all(inbox.messages[name] == [name.encode()] for name in names)

    async def test_subscribe_and_unsubscribe_are_idempotent(self, broker_url: str) -> None:
        async with connected(broker_url) as (broker, inbox):
            await broker.unsubscribe("never")  # no error
            await broker.subscribe("twice")
            await broker.subscribe("twice")
            assert await broker.subscription_count() == 1
            await broker.publish("twice", b"once")
            await inbox.wait_count("twice", 1)
            await asyncio.sleep(0.2)
            assert inbox.messages["twice"] == [b"once"]  # one subscription, one delivery
            await broker.unsubscribe("twice")
            await broker.unsubscribe("twice")
            assert await broker.subscription_count() == 0

    async def test_concurrent_first_subscribes_all_take_effect(self, broker_url: str) -> None:
        channels = [f"race-{i}" for i in range(100)]
        async with connected(broker_url) as (broker, inbox):
            await asyncio.gather(*(broker.subscribe(c) for c in channels))
            await asyncio.gather(*(broker.publish(c, c.encode()) for c in channels))
            for channel in channels:
                assert await inbox.wait_count(channel, 1) == [channel.encode()]

    async def test_many_channels_at_once(self, broker_url: str) -> None:
        channels = [f"mass-{i}" for i in range(2000)]
        async with connected(broker_url) as (broker, inbox):
            for channel in channels:
                await broker.subscribe(channel)
            assert await broker.subscription_count() == len(channels)
            await broker.publish(channels[-1], b"last")
            assert await inbox.wait_count(channels[-1], 1) == [b"last"]

    async def test_a_thousand_cycles_leak_no_subscription(self, broker_url: str) -> None:
        async with connected(broker_url) as (broker, inbox):
            for i in range(1000):
                await broker.subscribe(f"cycle-{i % 37}")
                await broker.unsubscribe(f"cycle-{i % 37}")
            assert await broker.subscription_count() == 0

    async def test_close_is_idempotent_and_final(self, broker_url: str) -> None:
        broker = broker_from_url(broker_url)
        inbox = Inbox()
        await broker.connect(inbox.deliver, inbox.on_event)
        await broker.close()
        await broker.close()
        with pytest.raises(BrokerClosed):
            await broker.publish("after", b"x")
        with pytest.raises(BrokerClosed):
            await broker.subscribe("after")

    async def test_instances_on_one_backend_reach_each_other(self, broker_url: str) -> None:
        async with connected(broker_url) as (publisher, _), connected(broker_url) as (subscriber, inbox):
            await subscriber.subscribe("between")
            await asyncio.sleep(0.1)  # a subscription takes effect asynchronously on some backends
            await publisher.publish("between", b"hello")
            if self.shared_between_instances:
                assert await inbox.wait_count("between", 1) == [b"hello"]
            else:  # memory:// is one process's world per instance, by design
                await asyncio.sleep(0.1)
                assert inbox.messages["between"] == []


async def check_unreachable(url: str, password: str | None = None) -> None:
    """Connecting to nothing raises BrokerUnavailable naming the URL without its password."""
    broker = broker_from_url(url)
    with pytest.raises(BrokerUnavailable) as info:
        await asyncio.wait_for(broker.connect(lambda c, p: None), 30)
    assert broker.safe_url in str(info.value)
    if password:
        assert password not in str(info.value)
    await broker.close()


async def check_restart_is_survived(server: object, inbox_timeout: float = 30.0) -> list[BrokerEvent]:
    """Kill the broker's own server mid-stream, restart it: delivery resumes, the gap is reported.

    ``server`` is a tests.support.own_servers.OwnServer.
    """
    url = server.url  # type: ignore[attr-defined]
    async with connected(url) as (broker, inbox):
        await broker.subscribe("survivor")
        await broker.publish("survivor", b"before")
        await inbox.wait_count("survivor", 1)
        server.restart()  # type: ignore[attr-defined]
        await inbox.wait_for(lambda: any(e.kind == "reconnected" for e in inbox.events), inbox_timeout)
        # The subscription is restored: a message published now arrives.
        for _ in range(100):
            with contextlib.suppress(Exception):
                await broker.publish("survivor", b"after")
                break
            await asyncio.sleep(0.1)
        await inbox.wait_for(lambda: b"after" in inbox.messages["survivor"], inbox_timeout)
        kinds = [e.kind for e in inbox.events]
        assert kinds.index("disconnected") < kinds.index("reconnected")
        reconnected = next(e for e in inbox.events if e.kind == "reconnected")
        assert reconnected.lost_seconds is not None and reconnected.lost_seconds >= 0
        return list(inbox.events)


class HistoryConformance:
    """What a broker with history (``?history=N``) adds (asgi_ws/brokers/history.py: positions
    ``"<epoch>-<n>"``, consecutive in a channel; ``history(channel, after)`` all that followed, or
    None). Subclasses give ``history_url(size, ttl=None)``, ``ttl`` the age limit in seconds."""

    #: The broker drops messages older than ``ttl`` one by one (PostgreSQL, NATS); False: the
    #: whole history expires ``ttl`` seconds after the channel's last message (Redis), and the
    #: next one starts a new epoch.
    ages_each_message: ClassVar[bool] = True
    #: The broker takes an age limit at all (memory:// keeps the last N, whatever their age).
    has_age_limit: ClassVar[bool] = True
    #: False for memory://: each instance is its own world.
    shared_between_instances: ClassVar[bool] = True

    @pytest.fixture
    def history_url(self) -> Callable[..., str]:
        raise NotImplementedError

    async def test_positions_are_consecutive_and_come_with_each_delivery(self, history_url: Callable[..., str]) -> None:
        async with connected(history_url(1000)) as (broker, inbox):
            assert broker.history_size == 1000
            assert await broker.last_position("h") == START
            await broker.subscribe("h")
            positions = [await broker.publish("h", f"m{i}".encode()) for i in range(5)]
            assert all(p is not None for p in positions)
            assert previous(positions[0]).endswith("-0")  # type: ignore[arg-type]  # the epoch's first
            for before, after in itertools.pairwise(positions):
                assert previous(after) == before  # type: ignore[arg-type]
            assert await inbox.wait_count("h", 5) == [f"m{i}".encode() for i in range(5)]
            assert inbox.positions["h"] == positions
            assert await broker.last_position("h") == positions[-1]

    async def test_history_after_a_position_is_exactly_what_followed(self, history_url: Callable[..., str]) -> None:
        async with connected(history_url(1000)) as (broker, _):
            positions = [await broker.publish("h2", bytes([i]) * 3) for i in range(6)]
            assert await broker.history("h2", positions[1]) == [(positions[i], bytes([i]) * 3) for i in range(2, 6)]
            assert await broker.history("h2", positions[-1]) == []
            assert [p for p, _ in await broker.history("h2", START) or []] == positions
            assert await broker.history("never-published", START) == []
            assert await broker.history("never-published", "5-0") == []
            epoch = position_key(positions[0])[0]
            assert await broker.history("h2", f"{epoch + 10**9}-1") is None  # a history that is not this one

    async def test_a_trimmed_history_says_so_and_is_never_partial(self, history_url: Callable[..., str]) -> None:
        async with connected(history_url(10)) as (broker, _):
            positions = [await broker.publish("h3", str(i).encode()) for i in range(500)]
            assert None not in positions
            # Redis trims approximately (whole nodes of 100 entries): at least the last 10 are kept.
            assert await broker.history("h3", positions[0]) is None
            assert await broker.history("h3", START) is None
            assert await broker.history("h3", positions[-1]) == []
            kept = await broker.history("h3", positions[-11])
            assert kept == [(p, str(i).encode()) for i, p in enumerate(positions) if i >= 490]
            everything = [(p, str(i).encode()) for i, p in enumerate(positions)]
            for index, after in enumerate(positions[:-11]):  # whatever is asked: all that followed, or None
                got = await broker.history("h3", after)
                assert got is None or got == everything[index + 1 :]

    async def test_every_instance_sees_one_order_the_order_of_the_history(
        self, history_url: Callable[..., str]
    ) -> None:
        if not self.shared_between_instances:
            pytest.skip("each instance of this broker is its own world")
        url = history_url(1000)
        async with connected(url) as (one, inbox_one), connected(url) as (two, inbox_two):
            for broker in (one, two):
                await broker.subscribe("shared")
            await asyncio.sleep(0.1)  # a subscription takes effect asynchronously on some backends
            publishers = (("a", one), ("b", two))
            await asyncio.gather(
                *(broker.publish("shared", f"{name}{i}".encode()) for i in range(50) for name, broker in publishers)
            )
            for inbox in (inbox_one, inbox_two):
                await inbox.wait_count("shared", 100)
            history = await one.history("shared", START)
            assert history is not None and len(history) == 100
            for inbox in (inbox_one, inbox_two):
                assert list(zip(inbox.positions["shared"], inbox.messages["shared"], strict=True)) == history
            for before, after in itertools.pairwise(history):
                assert previous(after[0]) == before[0]

    async def test_messages_past_the_age_limit_are_dropped_and_said_so(self, history_url: Callable[..., str]) -> None:
        if not self.has_age_limit:
            pytest.skip("this broker keeps the last N messages, whatever their age")
        async with connected(history_url(1000, 1.0)) as (broker, _):
            old = await broker.publish("aging", b"old")
            assert old is not None
            await asyncio.sleep(1.5)
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # the backend drops aged messages on its own schedule
                new = await broker.publish("aging", b"new")
                assert new is not None
                got = await broker.history("aging", START)
                if got is None or [m for _, m in got] == [b"new"] * len(got):
                    break
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.5)
            if self.ages_each_message:
                assert got is None  # what came after START is no longer all there
                assert await broker.history("aging", new) == []
                assert position_key(new)[0] == position_key(old)[0]  # the same history goes on
            else:
                assert got == [(new, b"new")]  # the history expired whole: a new epoch begins
                assert position_key(new)[0] > position_key(old)[0]
            assert b"old" not in [m for _, m in await broker.history("aging", old) or []]
