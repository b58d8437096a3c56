"""GraphQL subscriptions (Strawberry, graphql-transport-ws) behind Origin, Auth, Subprotocol,
Heartbeat, RateLimit and Backpressure, driven by a real GraphQL client (gql), and scaled across
two uvicorn processes on Redis (examples/graphql_app)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect

from asgi_ws.auth import SignedTicket
from examples.graphql_app.main import SUBPROTOCOL, make_app
from tests.support.clients import refusal
from tests.support.logs import no_server_errors
from tests.support.procs import uvicorn_process
from tests.support.server import serve

KEY = "graphql-tests-signing-key-0123456789"
TICKETS = SignedTicket([KEY], max_age=600)
ORIGIN = "https://app.example.com"
WAIT = 20.0


def ticket(name: str) -> str:
    return TICKETS.issue(name)


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    app = make_app(broker="memory://", secret_keys=[KEY], allow_origins=[ORIGIN], heartbeat_interval=0.2)
    with no_server_errors():
        async with serve(app, lifespan="on", log_config=None) as running:
            yield running


class Sessions:
    """gql sessions over WebsocketsTransport (graphql-transport-ws), closed together."""

    def __init__(self) -> None:
        self.clients: list[Client] = []

    async def open(self, url: str) -> AsyncClientSession:
        transport = WebsocketsTransport(
            url=url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL], headers={"Origin": ORIGIN}
        )
        client = Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=WAIT)
        self.clients.append(client)
        return await asyncio.wait_for(client.connect_async(), WAIT)

    async def close(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            await asyncio.wait_for(client.close_async(), WAIT)


@pytest.fixture
async def sessions() -> AsyncIterator[Sessions]:
    opened = Sessions()
    yield opened
    await opened.close()


async def take(session: AsyncClientSession, request: GraphQLRequest, count: int, what: str) -> list[dict[str, Any]]:
    """The first ``count`` results of a subscription, within WAIT seconds."""
    results: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT):
            async for result in session.subscribe(request):
                results.append(result)
                if len(results) == count:
                    break
    except TimeoutError:
        raise AssertionError(f"{what}: {len(results)} of {count} results within {WAIT} s: {results}") from None
    return results


async def test_a_subscription_streams_and_the_resolver_sees_the_authenticated_user(
    server: Any, sessions: Sessions
) -> None:
    session = await sessions.open(server.ws_url(f"/graphql?ticket={ticket('alice')}"))
    counted = await take(session, gql("subscription { count(upto: 5) }"), 5, "count")
    assert counted == [{"count": i} for i in range(5)]
    who = await take(session, gql("subscription { whoami }"), 1, "whoami")
    assert who == [{"whoami": "alice"}]  # scope["user"] from AuthMiddleware, read in the resolver
    assert await session.execute(gql("query { me }")) == {"me": "alice"}


async def test_a_mutation_reaches_a_subscription_in_the_same_process(server: Any, sessions: Sessions) -> None:
    alice = await sessions.open(server.ws_url(f"/graphql?ticket={ticket('alice')}"))
    bob = await sessions.open(server.ws_url(f"/graphql?ticket={ticket('bob')}"))
    received = await publish_until_received(alice, bob, "lobby")
    assert received["author"] == "alice" and received["room"] == "lobby"


async def test_any_rooms_publish_of_the_process_reaches_its_resolvers(server: Any, sessions: Sessions) -> None:
    """Not only mutations: server code publishing with the app's Rooms reaches the subscription
    of a client of the same process (its resolver follows the room with rooms.subscribe)."""
    rooms = server.server.config.app.state.rooms
    bob = await sessions.open(server.ws_url(f"/graphql?ticket={ticket('bob')}"))

    def publish(room: str, text: str) -> Awaitable[int]:
        return rooms.publish(room, {"text": text, "author": "the server"})

    received = await publish_until_received(publish, bob, "news")
    assert received["author"] == "the server" and received["room"] == "news"


async def test_handshakes_the_middlewares_refuse(server: Any) -> None:
    url = server.ws_url("/graphql")
    proto = [SUBPROTOCOL]
    assert (await refusal(url, origin=ORIGIN, subprotocols=proto)).status == 401  # type: ignore[arg-type]
    authed = f"{url}?ticket={ticket('alice')}"
    assert (await refusal(authed, origin="https://evil.example", subprotocols=proto)).status == 403  # type: ignore[arg-type]
    legacy = await refusal(authed, origin=ORIGIN, subprotocols=["graphql-ws"])  # type: ignore[list-item]
    assert legacy.status == 400 and "graphql-transport-ws" in legacy.body


async def graphql_frames(ws: ClientConnection, *, until: str, what: str) -> list[str]:
    """Every frame until (and with) the first whose ``type`` is ``until``."""
    frames: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while True:
                frame = await ws.recv()
                assert isinstance(frame, str), f"a binary frame reached the GraphQL client: {frame!r}"
                frames.append(frame)
                if frame.startswith('{"$ws"'):
                    message = json.loads(frame)
                    if message["$ws"] == "ping":
                        await ws.send(json.dumps({"$ws": "pong", "id": message["id"]}))
                    continue
                if json.loads(frame).get("type") == until:
                    return frames
    except TimeoutError:
        raise AssertionError(f"{what}: no {until!r} within {WAIT} s; got {frames}") from None


async def test_the_heartbeat_never_speaks_to_a_graphql_client_that_did_not_opt_in(server: Any) -> None:
    """A graphql-transport-ws client, by hand: over a subscription that lasts 8 heartbeat intervals
    (the server idles 1.5 intervals between results, the client says nothing), the client gets
    exactly the GraphQL frames: connection_ack, 8 ``next``, ``complete``. The same client saying
    the asgi_ws ``hello`` first is pinged meanwhile: the heartbeat was running."""
    subscribe = {
        "type": "subscribe",
        "id": "1",
        "payload": {"query": "subscription { whoami(times: 8, interval: 0.3) }"},
    }
    counts = {}
    for opted_in in (False, True):
        url = server.ws_url(f"/graphql?ticket={ticket('carol')}")
        async with connect(url, origin=ORIGIN, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[arg-type,list-item]
            assert ws.subprotocol == SUBPROTOCOL
            if opted_in:
                await ws.send(json.dumps({"$ws": "hello", "v": 1}))
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.send(json.dumps(subscribe))
            frames = await graphql_frames(ws, until="complete", what="the whoami subscription")
        control = [f for f in frames if f.startswith('{"$ws"')]
        graphql = [json.loads(f) for f in frames if not f.startswith('{"$ws"')]
        assert [m["type"] for m in graphql] == ["connection_ack", *["next"] * 8, "complete"]
        assert all(m["payload"] == {"data": {"whoami": "carol"}} for m in graphql if m["type"] == "next")
        counts[opted_in] = [json.loads(f)["$ws"] for f in control]
    assert counts[False] == [], f"the heartbeat spoke to a plain GraphQL client: {counts[False]}"
    assert counts[True][0] == "welcome" and "ping" in counts[True], counts[True]


Publish = Callable[[str, str], Awaitable[object]]


def mutations(publisher: AsyncClientSession) -> Publish:
    """Publish ``text`` to ``room`` with the ``sendMessage`` mutation, through ``publisher``."""
    mutation = gql("mutation ($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { author } }")

    def send(room: str, text: str) -> Awaitable[object]:
        mutation.variable_values = {"room": room, "text": text}
        return publisher.execute(mutation)

    return send


async def publish_until_received(
    publish: Publish | AsyncClientSession, subscriber: AsyncClientSession, room: str
) -> dict[str, Any]:
    """Subscribe ``subscriber`` to ``room``, then publish (mutations through a session, or any
    ``publish(room, text)``) until one arrives (the subscription is live on the broker some time
    after the subscribe was sent: graphql-transport-ws has no acknowledgement for it). Returns
    the first message received."""
    if isinstance(publish, AsyncClientSession):
        publish = mutations(publish)
    subscription = gql("subscription ($room: String!) { messages(room: $room) { room text author } }")
    subscription.variable_values = {"room": room}
    first: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def listen() -> None:
        async for result in subscriber.subscribe(subscription):
            if not first.done():
                first.set_result(result["messages"])

    listener = asyncio.create_task(listen())
    sent: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while not first.done():
                sent.append(f"hello {len(sent)}")
                await publish(room, sent[-1])
                await asyncio.wait({first, listener}, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
                if listener.done():
                    listener.result()  # raises what ended the subscription
                    raise AssertionError("the subscription ended")
    except TimeoutError:
        raise AssertionError(
            f"none of the {len(sent)} messages published reached the subscription in {WAIT} s"
        ) from None
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    received = first.result()
    assert received["text"] in sent
    return received


async def test_a_mutation_on_one_process_reaches_a_subscription_on_another(redis_url: str, sessions: Sessions) -> None:
    env = {
        "ASGI_WS_BROKER": f"{redis_url}?prefix=graphql-{uuid.uuid4().hex[:8]}:",
        "ASGI_WS_SECRET_KEYS": KEY,
        "ASGI_WS_ALLOW_ORIGINS": ORIGIN,
    }
    app = "examples.graphql_app.main:app"
    with (
        uvicorn_process(app, env=env, extra=["--lifespan", "on"]) as one,
        uvicorn_process(app, env=env, extra=["--lifespan", "on"]) as two,
    ):
        alice = await sessions.open(one.ws_url(f"/graphql?ticket={ticket('alice')}"))
        bob = await sessions.open(two.ws_url(f"/graphql?ticket={ticket('bob')}"))
        received = await publish_until_received(alice, bob, "lobby")
        assert received["author"] == "alice"
        # And back: bob's mutation on process two reaches alice's subscription on process one.
        received = await publish_until_received(bob, alice, "hall")
        assert received["author"] == "bob"
        await sessions.close()  # before the servers stop
