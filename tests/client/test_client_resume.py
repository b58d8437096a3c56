"""The client's session resumption against the real ResumeMiddleware under uvicorn."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from websockets.asyncio.client import connect as raw_connect

from asgi_ws import PubSubApp, ResumeMiddleware, connection_of
from asgi_ws.client import Backoff, Client, Event, ServerClosed, connect
from asgi_ws.protocol import decode
from asgi_ws.resume import session_of
from asgi_ws.types import ASGIApp, Message, Receive, Scope, Send
from tests.client.conftest import until
from tests.support.procs import free_port
from tests.support.server import serve

FAST = Backoff(base=0.02, cap=0.2)


KEY = secrets.token_urlsafe(32)


def resumable(app: ASGIApp, **options: Any) -> ResumeMiddleware:
    return ResumeMiddleware(app, secret_keys=[KEY], **options)


def streaming(count: int, every: float = 0.004) -> ASGIApp:
    """Send the session's frame numbers, 1 to ``count``, continuing where a resumed session stopped."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        conn = connection_of(scope)
        session = session_of(conn) if conn is not None else None
        assert session is not None, "the client asked for a resumable session"

        async def pump() -> None:
            while session.seq < count:
                await send({"type": "websocket.send", "text": str(session.seq + 1)})
                await asyncio.sleep(every)

        task = asyncio.create_task(pump())
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            task.cancel()

    return app


async def on_demand(scope: Scope, receive: Receive, send: Send) -> None:
    """On ``more <k>``, send the session's next ``k`` frame numbers (a resumed session continues them)."""
    await receive()
    await send({"type": "websocket.accept"})
    conn = connection_of(scope)
    session = session_of(conn) if conn is not None else None
    assert session is not None, "the client asked for a resumable session"
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        for _ in range(int(message["text"].split()[1])):
            await send({"type": "websocket.send", "text": str(session.seq + 1)})


def recording(app: ASGIApp, inbound: list[dict[str, Any]]) -> ASGIApp:
    """Record the client's control messages as the server receives them (outside every middleware)."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_record() -> Message:
            message = await receive()
            text = message.get("text")
            if message["type"] == "websocket.receive" and text and text.startswith('{"$ws"'):
                inbound.append(decode(text))
            return message

        await app(scope, receive_and_record, send)

    return wrapper


def drop(client: Client) -> None:
    """Cut the client's TCP connection without a close frame, as a network failure would."""
    link = client._link
    assert link is not None
    link.ws.transport.abort()


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.kind == kind]


@pytest.mark.parametrize("lost", [0, 5])
async def test_a_dropped_connection_resumes_without_gaps_or_duplicates(lost: int) -> None:
    events: list[Event] = []
    mw = resumable(on_demand)
    async with serve(mw) as server:
        async with connect(server.ws_url(), backoff=FAST, on_event=events.append) as client:
            await client.send("more 20")
            numbers = [int(await client.recv()) for _ in range(20)]
            session_id = client.session_id
            assert session_id is not None and client.received == 20
            if lost:  # the last frames were lost in flight: forget them (none was acknowledged yet)
                del numbers[-lost:]
                client._resume.received -= lost
            drop(client)
            await client.send("more 60")  # waits for the reconnection; written after the resume answer
            while numbers[-1] < 80:
                numbers.append(int(await client.recv()))
            assert client.session_id == session_id and client.received == 80
    assert numbers == list(range(1, 81))
    resumed = of(events, "resumed")
    assert len(resumed) == 1 and not of(events, "resume_failed")
    assert resumed[0].detail is not None and resumed[0].detail["id"] == session_id
    assert (resumed[0].detail["seq"], resumed[0].detail["replay"]) == (20 - lost, lost)
    await mw.close()


async def test_acks_every_100th_frame_and_then_once_a_second() -> None:
    inbound: list[dict[str, Any]] = []
    mw = resumable(streaming(250, every=0))
    async with serve(recording(mw, inbound)) as server:
        async with connect(server.ws_url()) as client:
            for _ in range(250):
                await client.recv()
            await until(lambda: any(m["$ws"] == "ack" and m["seq"] == 250 for m in inbound))
    acks = [m["seq"] for m in inbound if m["$ws"] == "ack"]
    assert {100, 200, 250} <= set(acks)
    assert acks == sorted(acks)
    await mw.close()


async def test_resumed_rooms_are_not_subscribed_again() -> None:
    pubsub = PubSubApp()
    inbound: list[dict[str, Any]] = []
    mw = resumable(pubsub, rooms=pubsub.rooms)
    events: list[Event] = []
    async with serve(recording(mw, inbound)) as server:
        async with (
            connect(server.ws_url(), backoff=FAST, on_event=events.append) as listener,
            connect(server.ws_url(), resume=False) as publisher,
        ):
            await listener.subscribe("news")
            drop(listener)
            await until(lambda: bool(of(events, "resumed")))
            assert of(events, "resumed")[0].detail["rooms"] == ["news"]  # type: ignore[index]
            await listener.subscribe("sync")  # answered in order, after anything the resume sent
            await publisher.publish("news", "after the resume")
            assert json.loads(await listener.recv()) == {"channel": "news", "data": "after the resume"}
    subscribes = [m["channel"] for m in inbound if m["$ws"] == "subscribe"]
    assert subscribes == ["news", "sync"]  # "news" came back with the session, not from the client
    await mw.close()
    await pubsub.rooms.close()


async def test_resume_failure_starts_a_fresh_session_and_restores_subscriptions() -> None:
    port = free_port()
    events: list[Event] = []
    pubsub = PubSubApp()
    first = resumable(pubsub, rooms=pubsub.rooms)
    async with serve(first, port=port):
        listener = await connect(f"ws://127.0.0.1:{port}/", backoff=FAST, on_event=events.append)
        await listener.subscribe("news")
        old_session = listener.session_id
    # Another server with the same key but its own store: the session is unknown there.
    second = resumable(pubsub, rooms=pubsub.rooms)
    try:
        async with serve(second, port=port):
            await until(lambda: bool(of(events, "resume_failed")))
            failed = of(events, "resume_failed")[0]
            assert failed.code == "unknown_session"
            await until(lambda: listener.session_id not in (None, old_session))
            await listener.subscribe("sync")  # after the restored subscription
            async with connect(f"ws://127.0.0.1:{port}/", resume=False) as publisher:
                await publisher.publish("news", 1)
            assert json.loads(await listener.recv()) == {"channel": "news", "data": 1}
            assert listener.received == 1  # the count restarted with the new session
    finally:
        await listener.close()
    assert not of(events, "resumed")
    await first.close()
    await second.close()
    await pubsub.rooms.close()


async def test_4409_session_resumed_elsewhere_is_not_retried() -> None:
    events: list[Event] = []
    mw = resumable(streaming(5))
    async with serve(mw) as server:
        async with connect(server.ws_url(), backoff=FAST, on_event=events.append) as client:
            for _ in range(5):
                await client.recv()
            url = server.ws_url(f"/?ws_resume={client._resume.token}&ws_seq={client.received}")
            async with raw_connect(url) as thief:
                assert decode(str(await thief.recv()))["$ws"] == "resumed"
                with pytest.raises(ServerClosed) as info:
                    await client.recv()
    assert info.value.code == 4409
    assert not of(events, "reconnecting")
    assert [e.kind for e in events][-2:] == ["disconnected", "closed"]
    await mw.close()


async def test_close_ends_the_session_for_good() -> None:
    mw = resumable(streaming(3))
    async with serve(mw) as server:
        async with connect(server.ws_url()) as client:
            for _ in range(3):
                await client.recv()
            token, seq = client._resume.token, client.received
        url = server.ws_url(f"/?ws_resume={token}&ws_seq={seq}")
        answers: list[str] = []

        async def try_to_resume() -> None:
            async with raw_connect(url) as ws:
                answers.append(decode(str(await ws.recv()))["$ws"])

        await try_to_resume()
        while answers[-1] != "resume_failed":  # the server forgets the session once it saw the 1000
            await asyncio.sleep(0.05)
            await try_to_resume()
            assert len(answers) < 50
    await mw.close()
