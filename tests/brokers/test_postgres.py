"""postgres://: the conformance suite on the machine's PostgreSQL, plus what is particular to
LISTEN/NOTIFY: the payload encoding, the side table for large payloads and its cleanup,
foreign notifications, and outages (on a server of the test's own, never the shared one)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws.brokers import broker_from_url
from asgi_ws.brokers.base import START
from asgi_ws.brokers.postgres import PostgresBroker, channel_ident, decode_notification, encode_inline
from asgi_ws.exceptions import BrokerError, ConfigurationError
from tests.brokers.conformance import (
    BrokerConformance,
    HistoryConformance,
    check_restart_is_survived,
    check_unreachable,
    connected,
)
from tests.support.own_servers import OwnServer, own_server
from tests.support.procs import free_port

LOGGER = "asgi_ws.brokers.postgres"


async def drop_tables(url: str, prefix: str) -> None:
    """Drop the tables the broker made under ``prefix`` (payloads, history, channels)."""
    conn = await asyncpg.connect(url)
    try:
        for table in ("payloads", "history", "channels"):
            await conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}"')
    finally:
        await conn.close()


@pytest.fixture
async def prefix(postgres_url: str) -> AsyncIterator[str]:
    """A prefix of this test's own (other test runs share the server); its tables are dropped after."""
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield prefix
    await drop_tables(postgres_url, prefix)


@pytest.fixture
def broker_url(postgres_url: str, prefix: str) -> str:
    return f"{postgres_url}?prefix={prefix}"


class TestPostgresBroker(BrokerConformance):
    """The behaviour every broker has, with ``broker_url`` above."""


class TestPostgresBrokerHistory(HistoryConformance):
    """History in a table, trimmed by count and age."""

    @pytest.fixture
    def history_url(self, broker_url: str) -> Callable[..., str]:
        def url(size: int, ttl: float | None = None) -> str:
            return f"{broker_url}&history={size}" + (f"&history_ttl={ttl}" if ttl is not None else "")

        return url


async def test_a_kept_message_too_large_for_a_notification_is_read_from_the_history(broker_url: str) -> None:
    big = bytes(range(256)) * 100  # 25,600 bytes: over the 8 kB of a notification
    async with connected(f"{broker_url}&history=10") as (broker, inbox):
        await broker.subscribe("big")
        first = await broker.publish("big", b"small")
        second = await broker.publish("big", big)
        assert await inbox.wait_count("big", 2) == [b"small", big]
        assert inbox.positions["big"] == [first, second]
        assert await broker.history("big", START) == [(first, b"small"), (second, big)]


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnServer]:
    with own_server("postgres") as server:
        yield server


async def sql(url: str, query: str, *args: object) -> list[Any]:
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# -- the encoding, without a server ----------------------------------------------------------


@given(st.text(min_size=1, max_size=256), st.binary(max_size=600), st.booleans())
def test_inline_notifications_round_trip(channel: str, payload: bytes, utf8: bool) -> None:
    text = encode_inline(channel, payload, 7999, utf8)
    assert text is not None
    assert "\x00" not in text and (utf8 or text.isascii())
    assert decode_notification(text) == (channel, payload)


def test_names_that_utf8_cannot_carry_travel_as_base64() -> None:
    for channel, payload in [("lone \ud800 surrogate", b"x"), ("nul\x00", b""), ("ok", b"\x00\xff")]:
        text = encode_inline(channel, payload, 7999)
        assert text is not None and text.startswith("b")
        assert decode_notification(text) == (channel, payload)
    assert encode_inline("room", b'{"a": 1}', 7999) == 't4:room{"a": 1}'


def test_the_inline_limit_is_exact() -> None:
    assert encode_inline("c", b"a" * 7995, 7999) == "t1:c" + "a" * 7995  # 7,999 bytes
    assert encode_inline("c", b"a" * 7996, 7999) is None
    assert encode_inline("c", b"\xff" * 5994, 7999) is not None  # base64: 2 + 4 + 7,992
    assert encode_inline("c", b"\xff" * 5995, 7999) is None


@pytest.mark.parametrize("text", ["", "x", "t", "t5:ab", "t-1:ab", "tx:ab", "bAA", "b!!:AA", "r", "r12a", "r-1"])
def test_foreign_formats_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_notification(text)


def test_identifiers_are_fixed_length_lowercase_and_distinct() -> None:
    names = ["a.b", "a_b", "A.B", "x" * 256, "房间"]
    idents = [channel_ident("asgi_ws_", name) for name in names]
    assert len(set(idents)) == len(names)
    assert all(len(i) == 40 and i.startswith("asgi_ws_") and i == i.lower() for i in idents)


@pytest.mark.parametrize("query", ["prefix=Bad", "prefix=" + "x" * 31, "keepalive=0", "timeout=x", "pool_size=0"])
def test_bad_options_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresBroker(f"postgres://localhost/db?{query}")


def test_both_schemes_select_this_broker() -> None:
    assert isinstance(broker_from_url("postgres://h/db"), PostgresBroker)
    assert isinstance(broker_from_url("postgresql://h/db"), PostgresBroker)


# -- on the shared server --------------------------------------------------------------------


async def test_unreachable_names_the_url_without_password() -> None:
    await check_unreachable(f"postgres://app:s3cret-pw@127.0.0.1:{free_port()}/db", "s3cret-pw")
    await check_unreachable(f"postgresql://127.0.0.1:{free_port()}/db?prefix=x_&timeout=2")


async def test_large_payloads_go_through_the_table_which_is_cleaned(postgres_url: str, prefix: str) -> None:
    table = f'"{prefix}payloads"'
    big = [os.urandom(9_000), os.urandom(20_000)]
    async with connected(f"{postgres_url}?prefix={prefix}&retention=0.5") as (broker, inbox):
        await broker.subscribe("big")
        await broker.publish("big", big[0])
        await broker.publish("big", b"small")  # inline, delivered after the big one it follows
        assert await inbox.wait_count("big", 2) == [big[0], b"small"]
        rows = await sql(postgres_url, f"SELECT id, length(body) FROM {table}")
        assert [r[1] for r in rows] == [9_000]
        await asyncio.sleep(0.6)  # past retention: the next large publish deletes the old row
        await broker.publish("big", big[1])
        assert await inbox.wait_count("big", 3) == [big[0], b"small", big[1]]
        assert [r[0] for r in await sql(postgres_url, f"SELECT length(body) FROM {table}")] == [20_000]


async def test_small_messages_wait_behind_large_ones(broker_url: str) -> None:
    sizes = [20_000 if i % 3 == 0 else i for i in range(60)]
    payloads = [os.urandom(n) for n in sizes]
    async with connected(broker_url) as (broker, inbox):
        await broker.subscribe("mixed")
        for payload in payloads:
            await broker.publish("mixed", payload)
        assert await inbox.wait_count("mixed", len(payloads)) == payloads


async def test_foreign_notifications_do_not_disturb(
    postgres_url: str, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = broker_url.split("prefix=")[1]
    ident = channel_ident(prefix, "mine")
    async with connected(broker_url) as (broker, inbox):
        await broker.subscribe("mine")
        await sql(postgres_url, "NOTIFY mine, 'raw'")  # an unrelated channel
        await sql(
            postgres_url, "SELECT pg_notify($1, 'garbage'), pg_notify($1, 't5:other'), pg_notify($1, 'r99')", ident
        )
        await broker.publish("mine", b"real")
        assert await inbox.wait_count("mine", 1) == [b"real"]
        await asyncio.sleep(0.2)
        assert dict(inbox.messages) == {"mine": [b"real"]} and inbox.events == []
    assert any("did not send" in r.message for r in caplog.records if r.name == LOGGER)


async def test_a_killed_session_is_replaced(postgres_url: str, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"asgi_ws_{prefix}"
    async with connected(f"{postgres_url}?prefix={prefix}&application_name={name}") as (broker, inbox):
        await broker.subscribe("phoenix")
        with caplog.at_level(logging.WARNING, LOGGER):
            await sql(
                postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name
            )
            await inbox.wait_for(lambda: [e.kind for e in inbox.events] == ["disconnected", "reconnected"])
        assert sum("lost the LISTEN connection" in r.message for r in caplog.records) == 1
        assert sum("reconnected to" in r.message for r in caplog.records) == 1
        assert await broker.subscription_count() == 1
        await broker.publish("phoenix", b"again")  # the pool replaces its killed connection too
        assert await inbox.wait_count("phoenix", 1) == [b"again"]


# -- on a server of the test's own -----------------------------------------------------------


async def test_a_restart_is_survived(own_postgres: OwnServer) -> None:
    events = await check_restart_is_survived(own_postgres)
    assert [e.kind for e in events] == ["disconnected", "reconnected"]
    assert "***" not in str(events)


async def test_an_outage_fails_publish_and_keeps_subscriptions(own_postgres: OwnServer) -> None:
    async with connected(f"{own_postgres.url}?timeout=2") as (broker, inbox):
        await broker.subscribe("before")
        own_postgres.kill()
        try:
            await inbox.wait_for(lambda: bool(inbox.events))
            with pytest.raises(BrokerError, match="could not publish"):
                await asyncio.wait_for(broker.publish("before", b"lost"), 5)
            await broker.subscribe("during")  # recorded, LISTENed on reconnection
            await broker.unsubscribe("before")
            assert await broker.subscription_count() == 1
        finally:
            own_postgres.start()
        await inbox.wait_for(lambda: any(e.kind == "reconnected" for e in inbox.events), 30)
        assert await broker.subscription_count() == 1
        await broker.publish("before", b"no")
        await broker.publish("during", b"yes")
        assert await inbox.wait_count("during", 1) == [b"yes"]
        assert inbox.messages["before"] == []


async def test_a_silently_dead_peer_is_noticed(own_postgres: OwnServer) -> None:
    # A stopped backend keeps its TCP connection open but never answers: only the keepalive sees it.
    async with connected(f"{own_postgres.url}?keepalive=0.2&timeout=0.5") as (broker, inbox):
        await broker.subscribe("zombie")
        pid = broker._conn.get_server_pid()  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGSTOP)
        try:
            await inbox.wait_for(lambda: any(e.kind == "reconnected" for e in inbox.events), 15)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert inbox.events[0].kind == "disconnected" and "TimeoutError" in str(inbox.events[0].error)
        await broker.publish("zombie", b"alive")
        assert await inbox.wait_count("zombie", 1) == [b"alive"]
