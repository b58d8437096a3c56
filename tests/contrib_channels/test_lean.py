"""LeanDispatchMixin consumers behave as stock Channels consumers: the same tests, run on both.

Each test runs with a stock ``AsyncWebsocketConsumer`` and with ``LeanWebsocketConsumer``, on
BrokerChannelLayer (where the lean consumer reads its channel's buffer directly) and on
Channels' InMemoryChannelLayer (where it falls back to ``receive()``): order per source, one
handler at a time, groups joined and left, ``disconnect`` and ``StopConsumer``, nothing lost
on cancellation or a failing server receive, database connections closed as Channels
closes them; with WebsocketCommunicator, and under a real uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator

from asgi_ws import ConfigurationError
from asgi_ws.contrib.channels import BrokerChannelLayer, LeanDispatchMixin, LeanWebsocketConsumer, db_connections
from tests.channels_layer.helpers import eventually, within
from tests.support.clients import opened
from tests.support.server import serve

KINDS = ["stock", "lean"]
GROUP = "probe"


def probe_class(kind: str, **attrs: Any) -> type[Any]:
    """A consumer in group ``probe`` recording what its handlers saw, on Channels' base or ours."""
    base = LeanWebsocketConsumer if kind == "lean" else AsyncWebsocketConsumer

    class Probe(base):  # type: ignore[misc,valid-type]
        groups = [GROUP]  # noqa: RUF012 - Channels' own idiom
        active = 0  # per instance, once a handler ran
        most_active = 0  # the most handlers of one consumer seen running at once
        handled: list[Any] = []  # noqa: RUF012 - one class per test
        disconnects: list[int] = []  # noqa: RUF012
        release: asyncio.Event | None = None  # probe.hold waits for it

        async def connect(self) -> None:
            await self.accept()
            await self.send(text_data=json.dumps({"channel": self.channel_name}))

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self._handle(("client", text_data), 2)

        async def probe_message(self, event: dict[str, Any]) -> None:
            await self._handle((event.get("via", "layer"), event["n"]), event.get("yields", 0))

        async def probe_hold(self, event: dict[str, Any]) -> None:
            self.handled.append(("hold", event["n"]))
            assert self.release is not None
            await self.release.wait()

        async def probe_stop(self, event: dict[str, Any]) -> None:
            self.handled.append(("stop", None))
            raise StopConsumer()

        async def _handle(self, item: tuple[str, Any], yields: int) -> None:
            self.active += 1  # this consumer's handlers running now
            type(self).most_active = max(type(self).most_active, self.active)
            try:
                for _ in range(yields):  # let anything else run meanwhile
                    await asyncio.sleep(0)
                self.handled.append(item)
                await self.send(text_data=json.dumps(item))
            finally:
                self.active -= 1

        async def disconnect(self, code: int) -> None:
            self.disconnects.append(code)

    for name, value in attrs.items():
        setattr(Probe, name, value)
    return Probe


@contextlib.contextmanager
def default_layer(layer: Any) -> Iterator[Any]:
    old = channel_layers.set("default", layer)
    try:
        yield layer
    finally:
        if old is None:  # set() would store None, returned to every later test
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", old)


@pytest.fixture(params=["broker", "inmemory"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "inmemory":
        with default_layer(InMemoryChannelLayer()) as made:
            yield made
        return
    made = BrokerChannelLayer(prefix=f"lean-{id(request)}")
    with default_layer(made):
        yield made
    await made.close()


async def connected(cls: type[Any]) -> tuple[WebsocketCommunicator, str]:
    communicator = WebsocketCommunicator(cls.as_asgi(), "/ws/")
    ok, _ = await communicator.connect(timeout=5)
    assert ok, "the consumer did not accept"
    hello = json.loads(await communicator.receive_from(timeout=5))
    return communicator, hello["channel"]


async def frames(communicator: WebsocketCommunicator, count: int, what: str) -> list[Any]:
    """The next ``count`` frames, read as Channels' tests read them (the communicator's own
    bounded wait, during which it makes Channels' database hop a no-op)."""
    out = []
    for i in range(count):
        try:
            out.append(json.loads(await communicator.receive_from(timeout=10)))
        except TimeoutError:
            raise AssertionError(f"{what}: {i} of {count} within 10 s each") from None
    return out


def members(layer: Any) -> int:
    if isinstance(layer, BrokerChannelLayer):
        core = layer._cores.get(asyncio.get_running_loop())
        group = core.groups.get(GROUP) if core is not None else None
        return len(group.members) if group is not None else 0
    return len(layer.groups.get(GROUP, {}))


@pytest.mark.parametrize("kind", KINDS)
async def test_order_per_source_and_one_handler_at_a_time(kind: str, layer: Any) -> None:
    cls = probe_class(kind)
    (one, channel), (two, _) = await connected(cls), await connected(cls)
    for n in range(20):
        await layer.group_send(GROUP, {"type": "probe.message", "n": n, "yields": 3})
        await layer.send(channel, {"type": "probe.message", "n": n, "via": "direct"})
        if n % 5 == 0:
            await one.send_to(text_data=f"c{n}")
    got_one = await frames(one, 20 + 20 + 4, "consumer one's messages")
    got_two = await frames(two, 20, "consumer two's group messages")
    for source in ("layer", "direct", "client"):
        seen = [n for via, n in got_one if via == source]
        assert seen == ([f"c{n}" for n in range(0, 20, 5)] if source == "client" else list(range(20))), source
    assert [n for _, n in got_two] == list(range(20))
    assert cls.most_active == 1, "two handlers of one consumer ran at once"
    await one.disconnect()
    await two.disconnect()


@pytest.mark.parametrize("kind", KINDS)
async def test_groups_joined_then_left_on_disconnect(kind: str, layer: Any) -> None:
    cls = probe_class(kind)
    (one, _), (two, _) = await connected(cls), await connected(cls)
    assert members(layer) == 2  # joined before connect() ran
    await one.disconnect(code=4001)
    assert cls.disconnects == [4001] and members(layer) == 1
    assert one.future.done() and one.future.exception() is None  # ended by StopConsumer, cleanly
    await layer.group_send(GROUP, {"type": "probe.message", "n": 1})
    assert await frames(two, 1, "the group message after one left") == [["layer", 1]]
    await two.disconnect(code=1001)
    assert cls.disconnects == [4001, 1001] and members(layer) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_stop_consumer_from_a_handler(kind: str, layer: Any) -> None:
    cls = probe_class(kind)
    communicator, channel = await connected(cls)
    await layer.send(channel, {"type": "probe.message", "n": 0})
    await layer.send(channel, {"type": "probe.stop"})
    await layer.send(channel, {"type": "probe.message", "n": 1})
    await within(communicator.wait(timeout=10), "the consumer ending on StopConsumer")
    assert communicator.future.exception() is None
    assert cls.handled == [("layer", 0), ("stop", None)]
    if isinstance(layer, BrokerChannelLayer) and kind == "lean":  # what it did not take stays
        assert await within(layer.receive(channel), "the message after the stop") == {"type": "probe.message", "n": 1}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cancelled_consumer_loses_nothing_it_did_not_take(kind: str) -> None:
    cls = probe_class(kind, release=asyncio.Event())
    layer = BrokerChannelLayer(prefix=f"lean-cancel-{kind}")
    try:
        with default_layer(layer):
            communicator, channel = await connected(cls)
            await layer.send(channel, {"type": "probe.hold", "n": 0})
            for n in range(1, 6):
                await layer.send(channel, {"type": "probe.message", "n": n})
            await eventually(lambda: cls.handled == [("hold", 0)], "the first handler running")
            communicator.future.cancel()  # the server goes away mid-handler
            with contextlib.suppress(asyncio.CancelledError):
                await within(communicator.future, "the cancelled consumer ending")
            rest = [(await within(layer.receive(channel), f"message {n}"))["n"] for n in range(1, 6)]
            assert rest == [1, 2, 3, 4, 5]
    finally:
        await layer.close()


async def test_a_failed_server_receive_still_lets_go_of_the_channel() -> None:
    """The consumer stops (StopConsumer in a handler) just as its pending server ``receive()``
    fails: the failure is raised, as in Channels, and the channel's reader is let go of all the
    same (another can be had), what the consumer did not take left to ``receive()``."""
    failing, failed = asyncio.Event(), asyncio.Event()
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "websocket.connect"}
        await failing.wait()
        failed.set()
        raise RuntimeError("the server's receive failed")

    class Stopping(probe_class("lean")):  # type: ignore[misc]
        async def probe_stop(self, event: dict[str, Any]) -> None:
            failing.set()
            await within(failed.wait(), "the server's receive failing")
            await asyncio.sleep(0)  # its task is done
            raise StopConsumer()

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    layer = BrokerChannelLayer(prefix="lean-failed-receive")
    try:
        with default_layer(layer):
            scope = {"type": "websocket", "path": "/ws/", "headers": [], "subprotocols": []}
            app = asyncio.ensure_future(Stopping.as_asgi()(scope, receive, send))
            await eventually(lambda: len(sent) == 2, "the consumer's accept and hello")
            channel = json.loads(sent[1]["text"])["channel"]
            await layer.send(channel, {"type": "probe.stop"})
            await layer.send(channel, {"type": "probe.message", "n": 1})
            with pytest.raises(RuntimeError, match="the server's receive failed"):
                await within(app, "the consumer ending")
            reader = layer.reader(channel, lambda: None)
            assert reader is not None, "the channel's buffer is still there"
            reader.close()
            rest = await within(layer.receive(channel), "the message after the stop")
            assert rest == {"type": "probe.message", "n": 1}
    finally:
        await layer.close()


@pytest.mark.parametrize(
    ("kind", "policy", "expected"),
    [
        ("stock", None, {4}),  # Channels: a fresh connection for every handler (CONN_MAX_AGE = 0)
        ("lean", "auto", {4}),  # the same
        ("lean", "always", {4}),
        ("lean", 3600.0, {1, 2}),  # one hop per hour: the connection is reused meanwhile
        ("lean", "never", {1}),
    ],
)
@pytest.mark.parametrize("waiting_on", ["the handlers", "the communicator"])
async def test_database_connections_closed_as_channels_closes_them(
    kind: str, policy: Any, expected: set[int], waiting_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler querying as Django's async ORM does (``sync_to_async``, in asgiref's one
    thread), with ``CONN_MAX_AGE = 0`` (the default), gets a new connection for each message
    under Channels' hop, and under the lean consumer's "auto". While a test waits on Channels'
    communicator, which makes the hop a no-op (a ``TestCase``'s connection is in a
    transaction), neither closes anything. (On the suite's file database: Django never closes
    in-memory SQLite connections.)"""
    from django.db import close_old_connections, connections
    from django.db.backends.signals import connection_created

    def query() -> int:
        with connections["files"].cursor() as cursor:
            cursor.execute("SELECT 1")
            return int(cursor.fetchone()[0])

    answers: list[int] = []

    class Orm(probe_class(kind)):  # type: ignore[misc]
        async def probe_message(self, event: dict[str, Any]) -> None:
            answers.append(await sync_to_async(query)())
            await self.send(text_data=json.dumps(["orm", event["n"]]))

    if policy is not None:
        Orm.close_old_connections = policy
    monkeypatch.setattr(db_connections, "_last_hop", -math.inf)
    opened_now: list[Any] = []

    def note(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened_now.append(connection)

    with default_layer(BrokerChannelLayer(prefix=f"lean-db-{kind}-{policy}")) as layer:
        communicator, channel = await connected(Orm)
        await sync_to_async(close_old_connections)()  # the ORM's thread starts with nothing open
        connection_created.connect(note)
        try:
            for n in range(4):
                await layer.send(channel, {"type": "probe.message", "n": n})
                if waiting_on == "the handlers":
                    await eventually(lambda n=n: len(answers) == n + 1, f"the handler's query {n}")
                assert await frames(communicator, 1, f"the answer {n}") == [["orm", n]]
        finally:
            connection_created.disconnect(note)
        await communicator.disconnect()
        await layer.close()
    assert len(opened_now) in (expected if waiting_on == "the handlers" else {1})


def test_the_policy_is_checked_and_sync_consumers_refused() -> None:
    from channels.generic.websocket import WebsocketConsumer

    with pytest.raises(ConfigurationError, match="close_old_connections"):

        class Bad(LeanWebsocketConsumer):  # type: ignore[misc]
            close_old_connections = "sometimes"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="async consumers"):

        class Sync(LeanDispatchMixin, WebsocketConsumer):  # type: ignore[misc]
            pass


@pytest.mark.e2e
@pytest.mark.parametrize("kind", KINDS)
async def test_under_uvicorn(kind: str) -> None:
    """Real sockets: members in a group get every group message in order; a client that goes
    away ends its consumer, which leaves the group."""
    cls = probe_class(kind)
    layer = BrokerChannelLayer(prefix=f"lean-uvicorn-{kind}")
    try:
        with default_layer(layer):
            async with serve(cls.as_asgi()) as server, contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(opened(server.ws_url("/ws/"))) for _ in range(3)]
                for ws in clients:
                    assert "channel" in json.loads(await within(ws.recv(), "the consumer's hello"))
                for n in range(30):
                    await layer.group_send(GROUP, {"type": "probe.message", "n": n, "yields": n % 3})
                for i, ws in enumerate(clients):
                    got = [json.loads(await within(ws.recv(), f"client {i}, message {n}")) for n in range(30)]
                    assert got == [["layer", n] for n in range(30)]
                await clients[0].close()
                await eventually(lambda: cls.disconnects == [1000], "the first consumer's disconnect()")
                await eventually(lambda: members(layer) == 2, "the first consumer leaving the group")
                await layer.group_send(GROUP, {"type": "probe.message", "n": 99})
                for ws in clients[1:]:
                    assert json.loads(await within(ws.recv(), "the message after one left")) == ["layer", 99]
            assert cls.most_active == 1
    finally:
        await layer.close()
