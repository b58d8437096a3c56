"""The Python client against real uvicorn servers on 127.0.0.1: no mocks in place of servers."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest

from asgi_ws import AuthMiddleware, HeartbeatMiddleware, PubSubApp
from asgi_ws.auth import SignedTicket
from asgi_ws.client import (
    Backoff,
    Client,
    ClientClosed,
    ClientGaveUp,
    Event,
    HandshakeRefused,
    RequestRefused,
    SendBufferFull,
    ServerClosed,
    connect,
)
from asgi_ws.types import Receive, Scope, Send
from tests.client.apps import closing_with, echo, refusing_with
from tests.client.conftest import until
from tests.support.procs import asgi_ws_serve, free_port, uvicorn_process
from tests.support.server import serve

FAST = Backoff(base=0.02, cap=0.2)


def kinds(events: list[Event]) -> list[str]:
    """Event kinds, without ``control`` events (a bare echo app sends the client's hello back)."""
    return [e.kind for e in events if e.kind != "control"]


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.kind == kind]


async def recv_text(client: Client) -> str:
    message = await client.recv()
    assert isinstance(message, str), message
    return message


@pytest.mark.parametrize("client_pings", [True, False])
async def test_heartbeat_is_answered_across_several_intervals(client_pings: bool) -> None:
    events: list[Event] = []
    app = HeartbeatMiddleware(echo, interval=0.2, timeout=0.3)
    async with serve(app) as server:
        async with connect(server.ws_url(), heartbeat=client_pings, on_event=events.append) as client:
            assert (await recv_text(client)).startswith("ready")
            await asyncio.sleep(1.2)  # six server intervals of silence from the application
            await client.send("still here")
            assert await client.recv() == "still here"  # the pings in between were never yielded
            assert client.features["heartbeat"] == {"interval": 0.2, "timeout": 0.3}
            assert (client.rtt is not None) is client_pings  # the client pinged the silent server itself
    assert kinds(events) == ["connected", "disconnected", "closed"]


async def test_control_messages_and_errors_never_reach_the_iterator() -> None:
    events: list[Event] = []
    frames = [
        '{"$ws":"presence_diff","channel":"c","join":{"member":"m"}}',
        "one",
        '{"$ws": "error", "code": "rate_limited", "message": "slow down", "dropped": 3}',
        '{"$ws":',  # malformed control message: logged and ignored
        '{"channel":"c","data":1}',
        '{ "$ws": "not control: a space before the key" }',
    ]
    async with serve(closing_with(1000, "bye", frames=frames)) as server:
        async with connect(server.ws_url(), on_event=events.append) as client:
            received = [message async for message in client]  # a server close with 1000 ends it cleanly
    assert received == ["one", '{"channel":"c","data":1}', '{ "$ws": "not control: a space before the key" }']
    error = next(e for e in events if e.kind == "error")
    assert (error.code, error.reason) == ("rate_limited", "slow down")
    control = next(e for e in events if e.kind == "control")
    assert control.detail is not None and control.detail["$ws"] == "presence_diff"
    assert "reconnecting" not in kinds(events)
    assert events[-1].kind == "closed" and events[-1].code == 1000 and events[-1].exception is None


async def test_reconnects_after_the_server_process_is_killed_and_restarted() -> None:
    port = free_port()
    events: list[Event] = []
    backoff = Backoff(base=0.05, cap=0.4)
    with uvicorn_process("tests.client.apps:echo_hb", port=port) as first:
        client = await connect(f"ws://127.0.0.1:{port}/", backoff=backoff, on_event=events.append)
        first_pid = (await client.recv()).split()[1]
        assert first_pid == str(first.proc.pid)
        first.proc.kill()  # no close frame: the client sees the connection drop
        first.proc.wait()
        await until(lambda: kinds(events).count("reconnecting") >= 3)  # refused while nothing listens
    try:
        with uvicorn_process("tests.client.apps:echo_hb", port=port) as second:
            assert await client.recv() == f"ready {second.proc.pid}"
            await client.send(b"\x00binary")
            assert await client.recv() == b"\x00binary"
    finally:
        await client.close()
    assert kinds(events)[:3] == ["connected", "disconnected", "reconnecting"]
    assert of(events, "disconnected")[0].code == 1006
    retries = [e for e in events if e.kind == "reconnecting"]
    assert [e.attempt for e in retries] == list(range(1, len(retries) + 1))
    for event in retries:  # the real delays stay within full jitter's bounds
        assert event.attempt is not None and event.delay is not None
        assert 0.0 <= event.delay <= backoff.ceiling(event.attempt - 1)
    assert kinds(events).count("connected") == 2


async def test_gives_up_after_max_attempts_against_a_dead_port() -> None:
    events: list[Event] = []
    url = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(ClientGaveUp) as info:
        async with connect(url, backoff=Backoff(base=0.01, max_attempts=3), on_event=events.append):
            raise AssertionError("nothing listens there")
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, OSError)
    assert kinds(events) == ["reconnecting"] * 3 + ["gave_up", "closed"]
    assert [e.attempt for e in of(events, "reconnecting")] == [1, 2, 3]
    assert isinstance(events[-1].exception, ClientGaveUp)


async def test_gives_up_mid_session_and_iteration_raises() -> None:
    port = free_port()
    events: list[Event] = []
    async with serve(echo, port=port):
        client = await connect(f"ws://127.0.0.1:{port}/", backoff=Backoff(base=0.01, max_attempts=2),
                               on_event=events.append)  # fmt: skip
        assert (await recv_text(client)).startswith("ready")
    received = []
    with pytest.raises(ClientGaveUp):
        async for message in client:
            received.append(message)
    assert received == []
    with pytest.raises(ClientGaveUp):
        await client.send("too late")
    await client.close()  # idempotent after the end
    assert kinds(events) == ["connected", "disconnected", "reconnecting", "reconnecting", "gave_up", "closed"]
    assert of(events, "disconnected")[0].code == 1012  # uvicorn's shutdown: "service restart", retried


@pytest.mark.parametrize("code", [4409, 4403, 1003])
async def test_dont_come_back_codes_are_not_retried(code: int) -> None:
    log: list[str] = []
    events: list[Event] = []
    async with serve(closing_with(code, "go away", frames=["last words"], log=log)) as server:
        async with connect(server.ws_url(), backoff=FAST, on_event=events.append) as client:
            received = []
            with pytest.raises(ServerClosed) as info:
                async for message in client:
                    received.append(message)
    assert received == ["last words"]  # frames received before the close are delivered first
    assert (info.value.code, info.value.reason) == (code, "go away")
    assert len(log) == 1
    assert kinds(events) == ["connected", "disconnected", "closed"]
    assert of(events, "disconnected")[0].code == code


async def test_retried_codes_reconnect() -> None:
    log: list[str] = []
    events: list[Event] = []
    async with serve(closing_with(4408, "heartbeat timeout", log=log)) as server:
        async with connect(server.ws_url(), backoff=FAST, on_event=events.append):
            await until(lambda: len(log) >= 3)
    assert kinds(events)[:4] == ["connected", "disconnected", "reconnecting", "connected"]
    # The server closed the first two connections with 4408; the last one may end any way
    # while the client is closed mid-handshake (1006 under load).
    assert [e.code for e in events if e.kind == "disconnected"][:2] == [4408, 4408]


async def test_4401_reconnects_with_a_fresh_ticket() -> None:
    tickets = SignedTicket([secrets.token_urlsafe(32)], connection_max_age=1.0)
    auth = AuthMiddleware(echo, backend=tickets)
    handshakes: list[str] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        handshakes.append(scope["query_string"].decode())
        await auth(scope, receive, send)

    issued: list[str] = []

    async def fresh_ticket() -> str:
        issued.append(tickets.issue("alice"))
        return issued[-1]

    events: list[Event] = []
    async with serve(recording) as server:
        async with connect(server.ws_url(), ticket=fresh_ticket, backoff=FAST, on_event=events.append) as client:
            await until(lambda: kinds(events).count("connected") >= 2)
            assert (await recv_text(client)).startswith("ready")
        assert of(events, "disconnected")[0].code == 4401
        assert len(issued) == len(handshakes) >= 2  # one fresh ticket per attempt...
        assert all(
            f"ticket={t}" in q for t, q in zip(issued, handshakes, strict=False)
        )  # ...in the parameter SignedTicket reads

        # A fixed ticket cannot be refreshed: 4401 ends the client.
        async with connect(server.ws_url(), ticket=tickets.issue("bob"), backoff=FAST) as fixed:
            with pytest.raises(ServerClosed) as info:
                async for _ in fixed:
                    pass
            assert info.value.code == 4401


async def test_handshake_refusals() -> None:
    log: list[str] = []
    async with serve(refusing_with(403, log)) as server:
        with pytest.raises(HandshakeRefused) as info:
            async with connect(server.ws_url(), backoff=FAST):
                pass
    assert info.value.status == 403 and info.value.reason == "refused by the test"
    assert len(log) == 1

    log.clear()
    counter = iter(range(100))
    async with serve(refusing_with(401, log)) as server:
        with pytest.raises(ClientGaveUp) as gave_up:
            async with connect(server.ws_url(), ticket=lambda: f"t{next(counter)}",
                               backoff=Backoff(base=0.01, max_attempts=2)):  # fmt: skip
                pass
    assert "HTTP 401" in gave_up.value.reason
    assert [q.split("&")[0] for q in log] == ["ticket=t0", "ticket=t1", "ticket=t2"]


async def test_send_waits_for_the_reconnection_with_a_bounded_buffer() -> None:
    port = free_port()
    async with serve(echo, port=port):
        client = await connect(f"ws://127.0.0.1:{port}/", backoff=FAST, max_pending=2)
        assert (await recv_text(client)).startswith("ready")
    try:
        await until(lambda: not client.connected)
        first = asyncio.create_task(client.send("queued 1"))
        second = asyncio.create_task(client.send_json({"queued": 2}))
        await asyncio.sleep(0.1)
        assert not first.done() and not second.done()  # waiting for a connection
        with pytest.raises(SendBufferFull):
            await client.send("one too many")
        async with serve(echo, port=port):
            await asyncio.gather(first, second)
            assert (await recv_text(client)).startswith("ready")
            assert await client.recv() == "queued 1"
            assert json.loads(await client.recv()) == {"queued": 2}
            with pytest.raises(ValueError):
                await client.send('{"$ws":"ping"}')  # reserved for the control protocol
    finally:
        await client.close()


async def test_close_ends_iteration_events_and_sends() -> None:
    async with serve(echo) as server:
        client = await connect(server.ws_url())
        stream = client.events()
        assert (await recv_text(client)).startswith("ready")
        reader = asyncio.create_task(_drain(client))
        await client.close()
        assert await reader == 0  # a clean end of the iteration
        assert kinds([e async for e in stream]) == ["disconnected", "closed"]
        with pytest.raises(ClientClosed):
            await client.send("after close")
        await client.close()  # idempotent
        assert client.closed and [e async for e in client.events()] == []


async def _drain(client: Any) -> int:
    count = 0
    async for _ in client:
        count += 1
    return count


async def test_pubsub_subscribe_publish_unsubscribe_and_refusals() -> None:
    app = PubSubApp(authorize=lambda scope, channel, action: channel != "secret" or "members only")
    async with serve(app) as server:
        a_events: list[Event] = []
        b_events: list[Event] = []
        async with (
            connect(server.ws_url(), on_event=a_events.append) as a,
            connect(server.ws_url(), on_event=b_events.append) as b,
        ):
            reply = await a.subscribe("news", presence=True, meta={"name": "a"})
            assert reply["channel"] == "news" and len(reply["members"]) == 1
            assert a.features["pubsub"]["publish"] is True
            await b.publish("news", {"headline": "hi"})
            assert json.loads(await a.recv()) == {"channel": "news", "data": {"headline": "hi"}}
            with pytest.raises(RequestRefused) as refused:
                await a.subscribe("secret")
            assert (refused.value.code, refused.value.message) == ("forbidden", "members only")
            assert a.subscriptions == {"news"}
            await b.subscribe("news")  # a asked for presence: b's join is a control event, not a message
            await until(lambda: any(e.kind == "control" for e in a_events))
            await b.send_control("presence", {"channel": "news", "id": 9})
            await until(lambda: any(e.kind == "control" for e in b_events))
            assert len(next(e for e in b_events if e.kind == "control").detail["members"]) == 2  # type: ignore[index]
            await a.unsubscribe("news")
            await b.publish("news", "not for a")
            await a.send("plain text")  # PubSubApp takes control messages only: an error event, not an exception
            await until(lambda: kinds(a_events).count("error") == 2)
            await a.subscribe("sync")  # answered in order: nothing from "news" arrived before this
            assert a.subscriptions == {"sync"}
            await b.publish("sync", 1)
            assert json.loads(await a.recv()) == {"channel": "sync", "data": 1}
    assert [e.code for e in a_events if e.kind == "error"] == ["forbidden", "unexpected_message"]
    await app.rooms.close()


async def test_a_presence_list_longer_than_a_clients_control_message_limit_arrives() -> None:
    """The server bounds what clients send it (64 KiB); the client must not bound the server's replies so."""
    app = PubSubApp()
    async with serve(app) as server:
        meta = {"bio": "x" * 900}
        members = [await connect(server.ws_url()).__aenter__() for _ in range(80)]
        try:
            for member in members:
                await member.subscribe("crowd", meta=meta)
            async with connect(server.ws_url()) as watcher:
                reply = await asyncio.wait_for(watcher.subscribe("crowd", presence=True), 10)
                assert len(reply["members"]) == 81
                assert len(json.dumps(reply)) > 65_536
        finally:
            for member in members:
                await member.close()
    await app.rooms.close()


async def test_publish_refused() -> None:
    app = PubSubApp(allow_publish=False, max_publish_bytes=10)
    async with serve(app) as server:
        async with connect(server.ws_url()) as client:
            with pytest.raises(RequestRefused) as info:
                await client.publish("news", "hello")
            assert info.value.code == "forbidden"
            await client.subscribe("news")  # the connection keeps working
    await app.rooms.close()


async def test_subscriptions_are_restored_after_asgi_ws_serve_restarts() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    origin = {"Origin": f"http://127.0.0.1:{port}"}  # asgi-ws serve allows same-origin pages
    events: list[Event] = []
    with asgi_ws_serve(port=port) as first:
        listener = await connect(url, headers=origin, backoff=FAST, on_event=events.append)
        await listener.subscribe("lobby")
        await listener.subscribe("other")
        await listener.unsubscribe("other")
        first.proc.kill()
        first.proc.wait()
        await until(lambda: "reconnecting" in kinds(events))
    try:
        with asgi_ws_serve(port=port):
            await until(lambda: kinds(events).count("connected") == 2)
            await listener.subscribe("sync")  # answered after the restored subscription
            async with connect(url, headers=origin) as publisher:
                await publisher.publish("lobby", {"after": "restart"})
                await publisher.publish("other", "unsubscribed: not restored")
                await publisher.publish("sync", "done")
            assert json.loads(await listener.recv()) == {"channel": "lobby", "data": {"after": "restart"}}
            assert json.loads(await listener.recv()) == {"channel": "sync", "data": "done"}
    finally:
        await listener.close()
    assert listener.subscriptions == {"lobby", "sync"}
