"""The NATS broker: the conformance suite on the machine's NATS and on a NATS whose max_payload is
4 KiB (so every large payload of the suite is chunked), then what only NATS has: the subject
mapping, chunk reassembly, start-up failure, outages of a server of the test's own, slow consumers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ws.brokers import broker_from_url
from asgi_ws.brokers.nats import CHUNK_HEADER, NatsBroker, Reassembler, channel_subject
from asgi_ws.exceptions import BrokerError, BrokerUnavailable, ConfigurationError
from tests.brokers.conformance import (
    BrokerConformance,
    HistoryConformance,
    check_restart_is_survived,
    check_unreachable,
    connected,
    unescape_token,
)
from tests.support.own_servers import NatsServer, own_server
from tests.support.procs import free_port

LOGGER = "asgi_ws.brokers.nats"


def unique(url: str, query: str = "") -> str:
    """``url`` with a prefix of its own: tests never see each other's messages on the shared server."""
    return f"{url}?prefix=asgi_ws_test.{uuid.uuid4().hex[:12]}{query}"


class TestNatsBroker(BrokerConformance):
    @pytest.fixture
    def broker_url(self, nats_url: str) -> str:
        return unique(nats_url)


async def delete_streams(nats_url: str, prefix: str) -> None:
    """Delete the JetStream streams of the history brokers under ``prefix`` (one per channel)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for name in await js.streams_info():
            if name.config.name.startswith(prefix.replace(".", "_") + "_"):
                await js.delete_stream(name.config.name)
    finally:
        await nc.close()


@pytest.fixture
async def history_prefix(nats_url: str) -> AsyncIterator[str]:
    prefix = f"asgi_ws_test.h{uuid.uuid4().hex[:12]}"
    yield prefix
    await delete_streams(nats_url, prefix)


class TestNatsBrokerHistory(HistoryConformance):
    """History on JetStream: a stream per channel, limits by count and age."""

    @pytest.fixture
    def history_url(self, nats_url: str, history_prefix: str) -> Callable[..., str]:
        def url(size: int, ttl: float | None = None) -> str:
            age = f"&history_ttl={ttl}" if ttl is not None else ""
            return f"{nats_url}?prefix={history_prefix}&history={size}&history_storage=memory{age}"

        return url


class SmallPayloadNats(NatsServer):
    """A NATS server of the test's own with ``max_payload: 4096``."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="asgi_ws_nats_"))
        (self.dir / "nats.conf").write_text("max_payload: 4096\n")

    def command(self) -> list[str]:
        return [*super().command(), "-c", str(self.dir / "nats.conf")]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def small_payload_nats() -> Iterator[str]:
    server = SmallPayloadNats()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class TestNatsBrokerChunked(BrokerConformance):
    @pytest.fixture
    def broker_url(self, small_payload_nats: str) -> str:
        return unique(small_payload_nats)


# -- subject mapping ----------------------------------------------------------------------------

TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # NATS's recommended subject characters; no dot, space or wildcard


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(exclude_categories=()), min_size=1, max_size=256))
def test_every_channel_name_maps_to_one_valid_subject_token_that_decodes_back(name: str) -> None:
    subject = channel_subject("app.ws", name)
    assert subject.startswith("app.ws.")
    token = subject.removeprefix("app.ws.")
    assert TOKEN.fullmatch(token)
    assert unescape_token(token) == name  # decodable, so distinct names never share a subject
    assert len(subject) <= len("app.ws.") + 3 * len(name.encode("utf-8", "surrogatepass"))


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_distinct_names_get_distinct_subjects(a: str, b: str) -> None:
    assert (channel_subject("p", a) == channel_subject("p", b)) == (a == b)


def test_subjects_stay_readable_for_plain_names() -> None:
    assert channel_subject("asgi_ws", "room-42") == "asgi_ws.room-42"
    assert channel_subject("asgi_ws", "a.b") == "asgi_ws.a_2Eb"
    assert channel_subject("asgi_ws", "a_2Eb") == "asgi_ws.a_5F2Eb"
    assert channel_subject("asgi_ws", "a b*>") == "asgi_ws.a_20b_2A_3E"


async def test_a_plain_nats_client_shares_the_mapped_subject(nats_url: str) -> None:
    url = unique(nats_url)
    subject = channel_subject(NatsBroker(url).prefix, "room 1")
    raw = await nats.connect(nats_url)
    try:
        sub = await raw.subscribe(subject)
        await raw.flush()
        async with connected(url) as (broker, inbox):
            await broker.subscribe("room 1")
            await broker.publish("room 1", b"from asgi_ws")
            msg = await sub.next_msg(timeout=5)
            assert (msg.data, msg.headers) == (b"from asgi_ws", None)  # small payloads go out as they are
            await raw.publish(subject, b"from elsewhere")
            assert await inbox.wait_count("room 1", 2) == [b"from asgi_ws", b"from elsewhere"]
    finally:
        await raw.close()


# -- payloads over max_payload ------------------------------------------------------------------


async def test_payloads_over_max_payload_are_chunked_and_keep_their_order(nats_url: str) -> None:
    url = unique(nats_url)
    big = [bytes([n]) * (3 * 1024 * 1024 + n) for n in range(2)]
    raw = await nats.connect(nats_url)
    try:
        async with connected(url) as (broker, inbox):
            sub = await raw.subscribe(channel_subject(NatsBroker(url).prefix, "big"))
            await raw.flush()
            await broker.subscribe("big")
            for n, payload in enumerate(big):
                await broker.publish("big", payload)
                await broker.publish("big", b"small %d" % n)
            got = await inbox.wait_count("big", 4, timeout=30)
            assert got == [big[0], b"small 0", big[1], b"small 1"]
            chunk = await sub.next_msg(timeout=5)  # what another NATS client sees: headed chunks
            assert chunk.headers is not None and chunk.headers[CHUNK_HEADER].endswith(" 0/4")
            assert len(chunk.data) <= raw.max_payload
            with pytest.raises(ValueError, match="max_message"):
                await broker.publish("big", bytes(16 * 1024 * 1024 + 1))
    finally:
        await raw.close()


async def test_concurrent_chunked_publishes_do_not_mix(small_payload_nats: str) -> None:
    url = unique(small_payload_nats)
    payloads = [bytes([n]) * (50_000 + n) for n in range(6)]
    async with connected(url) as (one, _), connected(url) as (other, _), connected(url) as (receiver, inbox):
        await receiver.subscribe("mixed")
        await asyncio.sleep(0.1)
        await asyncio.gather(
            *(broker.publish("mixed", p) for broker, p in zip([one, other] * 3, payloads, strict=True))
        )
        got = await inbox.wait_count("mixed", len(payloads), timeout=20)
        assert sorted(got) == sorted(payloads)


def test_the_reassembler_drops_incomplete_messages_and_stays_bounded() -> None:
    joiner = Reassembler(limit=100)
    assert joiner.add("m1 0/3", b"a") is None
    assert joiner.add("m1 1/3", b"b") is None
    assert joiner.add("m1 2/3", b"c") == b"abc"
    assert joiner.add("m2 0/3", b"a") is None
    assert joiner.add("m2 2/3", b"c") is None  # chunk 1 was lost
    assert joiner.dropped == 1
    assert joiner.add("m3 1/3", b"b") is None  # chunk 0 was lost: the rest is ignored, counted once
    assert joiner.add("m3 2/3", b"c") is None
    assert joiner.dropped == 2
    assert joiner.add("old 0/2", b"x" * 60) is None
    assert joiner.add("new 0/2", b"y" * 60) is None  # over the limit: the least recently extended goes
    assert joiner.dropped == 3
    assert joiner.add("new 1/2", b"z") == b"y" * 60 + b"z"
    assert joiner.add("old 1/2", b"x") is None
    assert joiner.dropped == 3
    for bad in ("", "m", "m 0", "m 3/3", "m x/2", " 0/1"):
        with pytest.raises(ValueError):
            joiner.add(bad, b"")


# -- URLs ---------------------------------------------------------------------------------------


def test_url_forms_and_options() -> None:
    broker = NatsBroker("nats://alice:p%40ss@h1:4222,h2?prefix=app.ws&pending_msgs=10&outbound_buffer=4096")
    assert broker.servers == ["nats://h1:4222", "nats://h2"]
    assert (broker.prefix, broker.pending_msgs, broker.outbound_buffer) == ("app.ws", 10, 4096)
    assert broker.safe_url == "nats://alice:***@h1:4222,h2?prefix=app.ws&pending_msgs=10&outbound_buffer=4096"
    assert NatsBroker("nats://t0ken@h:4222").safe_url == "nats://***@h:4222"
    assert isinstance(broker_from_url("tls://h:4222"), NatsBroker)
    bad_urls = ["nats://", "nats://h,", "nats://h?prefix=a..b", "nats://h?prefix=a.*", "nats://h?prefix=a%20b"]
    bad_urls += ["nats://h?pending_msgs=0", "nats://h?max_message=big", "nats://h?bogus=1"]
    for bad in bad_urls:
        with pytest.raises(ConfigurationError):
            NatsBroker(bad)
    with pytest.raises(ConfigurationError, match="max_reconnect_attempts"):
        NatsBroker("nats://h", max_reconnect_attempts=3)


async def test_an_unreachable_server_fails_fast_without_secrets() -> None:
    port = free_port()
    started = time.monotonic()
    await check_unreachable(f"nats://alice:s3cret-pw@127.0.0.1:{port}", password="s3cret-pw")
    await check_unreachable(f"nats://s3cret-token@127.0.0.1:{port}?prefix=x", password="s3cret-token")
    await check_unreachable(f"nats://127.0.0.1:{port},127.0.0.1:{free_port()}")
    broker = NatsBroker(f"nats://127.0.0.1:{port}")
    with pytest.raises(BrokerUnavailable, match="ConnectionRefusedError"):  # the cause, not "no servers"
        await broker.connect(lambda c, p: None)
    assert time.monotonic() - started < 15


class AuthNats(NatsServer):
    """A NATS server of the test's own that wants a user and a password."""

    def command(self) -> list[str]:
        return [*super().command(), "--user", "alice", "--pass", "p@ss:w/rd"]


async def test_credentials_from_the_url_are_used_and_never_shown() -> None:
    server = AuthNats()
    server.start()
    try:
        host = f"127.0.0.1:{server.port}"
        async with connected(f"nats://alice:p%40ss%3Aw%2Frd@{host}") as (broker, inbox):
            await broker.subscribe("in")
            await broker.publish("in", b"authenticated")
            assert await inbox.wait_count("in", 1) == [b"authenticated"]
        broker = NatsBroker(f"nats://alice:wrong-pw@{host}")
        # The server answers -ERR 'Authorization Violation' and closes; under load the close
        # can reach the client first (a connection reset): refused either way, never shown.
        with pytest.raises(BrokerUnavailable, match=r"Authorization Violation|ConnectionResetError") as info:
            await broker.connect(lambda c, p: None)
        assert "wrong-pw" not in str(info.value) and broker.safe_url in str(info.value)
    finally:
        server.stop()


# -- outages and overload -----------------------------------------------------------------------


async def test_a_server_restart_is_survived_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with own_server("nats") as server:
        events = await check_restart_is_survived(server)
    assert [e.kind for e in events] == ["disconnected", "reconnected"]
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(logged) == 2 and " lost " in logged[0] and " restored " in logged[1]


async def test_publishes_during_an_outage_wait_in_a_bounded_buffer() -> None:
    with own_server("nats") as server:
        async with connected(f"{server.url}?outbound_buffer=65536") as (broker, inbox):
            await broker.subscribe("outage")
            server.kill()
            await inbox.wait_for(lambda: [e.kind for e in inbox.events] == ["disconnected"])
            await broker.publish("outage", b"during")  # kept for the reconnection
            with pytest.raises(BrokerError, match="outbound_buffer=65536"):
                await broker.publish("outage", bytes(100_000))
            await asyncio.sleep(1.5)  # several attempts fail meanwhile: reconnection never gives up
            server.start()
            await inbox.wait_for(lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"], 30)
            assert await inbox.wait_count("outage", 1) == [b"during"]
            assert inbox.events[1].lost_seconds is not None and inbox.events[1].lost_seconds >= 1.5


async def test_slow_consumer_drops_are_counted_and_logged(nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with connected(unique(nats_url, "&pending_msgs=2")) as (broker, inbox):
        assert isinstance(broker, NatsBroker)
        await broker.subscribe("flood")
        for _ in range(2000):
            await broker.publish("flood", b"x")
        for _ in range(200):
            if len(inbox.messages["flood"]) + broker.slow_consumer_drops >= 2000:
                break
            await asyncio.sleep(0.05)
        assert broker.slow_consumer_drops > 0
        assert len(inbox.messages["flood"]) + broker.slow_consumer_drops == 2000
    slow = [r for r in caplog.records if r.name == LOGGER and "slow consumer" in r.getMessage()]
    assert len(slow) == 1  # one line per 10 s, however many drops


async def test_close_during_an_outage_is_quiet_and_leaves_no_task() -> None:
    with own_server("nats") as server:
        async with connected(server.url) as (broker, inbox):
            await broker.subscribe("lost")
            server.kill()
            await inbox.wait_for(lambda: bool(inbox.events))
            await broker.publish("lost", b"buffered")  # nats-py's close() used to raise on this one
        await asyncio.sleep(0.1)
    left = [t for t in asyncio.all_tasks() if "/nats/" in t.get_coro().cr_code.co_filename]  # type: ignore[union-attr]
    assert left == []
