"""ResumeMiddleware end to end: real uvicorn, real WebSocket clients, memory and Redis stores."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import ResumeMiddleware, Rooms
from asgi_ws.resume import MemorySessionStore
from tests.resume import resume_app
from tests.resume.wire import Stream, expected, members, opened, read_until, refused
from tests.support.procs import uvicorn_process
from tests.support.server import WS_IMPLS, serve


def got(n: int) -> Any:
    return lambda s: len(s.data) >= n


async def test_a_plain_client_is_untouched() -> None:
    async with serve(resume_app.make_app()) as server:
        async with connect(server.ws_url("/")) as ws:
            await ws.send("emit 1 4")
            assert [await ws.recv() for _ in range(3)] == ["1", "2", "3"]


@pytest.mark.parametrize("ws_impl", WS_IMPLS)
async def test_a_cut_connection_resumes_with_every_message_once_in_order(ws_impl: str) -> None:
    async with serve(resume_app.make_app(), ws=ws_impl) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        assert stream.last("session")["seq"] == 0 and stream.last("session")["window"] == 120
        await ws.send("emit 1 500")
        await read_until(ws, stream, got(37))
        ws.transport.abort()  # the TCP connection dies mid-stream; the server may not notice yet
        ws = await opened(server.ws_url("/"), stream)
        resumed = stream.last("resumed")
        assert resumed["id"] == stream.session_id and resumed["seq"] == 37
        await read_until(ws, stream, got(499))
        await ws.send("emit 500 600")
        await read_until(ws, stream, got(599))
        assert stream.data == expected(1, 600)
        await ws.close()


async def test_acknowledged_messages_are_trimmed_and_a_normal_close_ends_the_session() -> None:
    store = MemorySessionStore()
    async with serve(resume_app.make_app(store)) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("emit 1 61")  # stored entries are trimmed whole: 1-60 come before 61-100
        await read_until(ws, stream, got(60))
        await ws.send("emit 61 101")
        await read_until(ws, stream, got(100))
        record = store._records[stream.session_id]  # type: ignore[index]
        assert record.head == 100
        await ws.send('{"$ws":"ack","seq":60}')
        await ws.send("emit 101 102")  # the next store write trims
        await read_until(ws, stream, got(101))
        assert record.first == 61
        await ws.close(1000)
        for _ in range(100):
            if not len(store):
                break
            await asyncio.sleep(0.02)
        assert len(store) == 0


async def test_the_same_session_on_a_second_socket_closes_the_first_with_4409() -> None:
    async with serve(resume_app.make_app()) as server:
        stream = Stream()
        first = await opened(server.ws_url("/"), stream)
        await first.send("emit 1 6")
        await read_until(first, stream, got(5))
        second = await opened(server.ws_url("/"), stream)  # the first socket is still open
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(first.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        assert stream.last("resumed")["replay"] == 0
        await second.send("emit 6 8")
        await read_until(second, stream, got(7))
        assert stream.data == expected(1, 8)
        await second.close()


def forged(stream: Stream, keys: list[str], data: Any = None) -> str:
    return URLSafeTimedSerializer(keys, salt="asgi_ws.resume").dumps(data or {"s": stream.session_id, "u": None})


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("tampered", "invalid_token"),
        ("retired_key", "invalid_token"),
        ("forged", "invalid_token"),
        ("unknown_session", "unknown_session"),
        ("seq_ahead", "seq_ahead"),
        ("bad_seq", "bad_request"),
    ],
)
async def test_refused_resumes_say_why_and_start_a_fresh_session(case: str, code: str) -> None:
    async with serve(resume_app.make_app()) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("emit 1 4")
        await read_until(ws, stream, got(3))
        ws.transport.abort()
        assert stream.token is not None
        seq = "3"
        if case == "tampered":
            stream.token = stream.token[:-2] + ("AA" if stream.token[-2:] != "AA" else "BB")
        elif case == "retired_key":
            stream.token = forged(stream, ["a-key-no-longer-listed"])
        elif case == "forged":
            stream.token = forged(stream, ["guess"])
        elif case == "unknown_session":
            stream.token = forged(stream, resume_app.KEYS, {"s": uuid.uuid4().hex, "u": None})
        elif case == "seq_ahead":
            seq = "4"
        else:
            seq = "three"
        url = f"{server.ws_url('/')}?ws_resume={stream.token}&ws_seq={seq}"
        again, fresh, failed = await refused(url)
        assert failed["code"] == code and failed["reason"]
        assert fresh.session_id != stream.session_id and fresh.last("session")["seq"] == 0
        await again.send("emit 1 3")  # the fresh session works
        await read_until(again, fresh, got(2))
        assert fresh.data == ["1", "2"]


async def test_resumption_is_counted_in_the_metrics() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from asgi_ws.metrics import AsgiWsCollector

    app = resume_app.make_app()
    registry = CollectorRegistry()
    registry.register(AsgiWsCollector(resume=[app], names=["chat"]))
    async with serve(app) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("emit 1 3")
        await read_until(ws, stream, got(2))
        ws.transport.abort()
        await opened(server.ws_url("/"), stream)
        await refused(f"{server.ws_url('/')}?ws_resume=forged&ws_seq=0")
        text = generate_latest(registry).decode()
    for line in [
        'asgi_ws_resume_created_total{middleware="chat"} 2.0',  # the first, and the refused one's fresh one
        'asgi_ws_resume_resumed_total{middleware="chat"} 1.0',
        'asgi_ws_resume_refused_total{code="invalid_token",middleware="chat"} 1.0',
        'asgi_ws_resume_live_sessions{middleware="chat"}',
    ]:
        assert line in text, line


async def test_a_gap_older_than_the_history_is_refused() -> None:
    async with serve(resume_app.make_app(max_messages=10)) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("emit 1 4")
        await read_until(ws, stream, got(3))
        ws.transport.abort()
        # 3 received, 50 more sent while away: only the last 10 are kept.
        async with connect(f"{server.ws_url('/')}?ws_resume={stream.token}&ws_seq=3") as again:
            fresh = Stream()
            await read_until(again, fresh, lambda s: any(c["$ws"] == "resumed" for c in s.controls))
            await again.send("emit 4 54")
            await read_until(again, fresh, got(50))
            again.transport.abort()
        _, _, failed = await refused(f"{server.ws_url('/')}?ws_resume={fresh.token}&ws_seq=3")
        assert failed["code"] == "gap_too_old"


async def test_an_expired_token_is_refused() -> None:
    async with serve(resume_app.make_app(window=1)) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        ws.transport.abort()
        await asyncio.sleep(2.1)  # itsdangerous counts whole seconds
        _, _, failed = await refused(stream.url(server.ws_url("/")))
        assert failed["code"] == "expired"


async def test_another_user_cannot_resume_the_session() -> None:
    from asgi_ws import AuthMiddleware
    from asgi_ws.auth import QueryToken

    app = AuthMiddleware(resume_app.make_app(), backend=QueryToken(lambda t: {"a": "alice", "b": "bob"}.get(t)))
    async with serve(app) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/?token=a"), stream)
        ws.transport.abort()
        _, _, failed = await refused(f"{server.ws_url('/')}?token=b&ws_resume={stream.token}&ws_seq=0")
        assert failed["code"] == "identity_mismatch"


async def test_a_resume_runs_the_handshake_checks_again() -> None:
    """Expired or revoked credentials are refused by AuthMiddleware before a session is resumed."""
    from websockets.exceptions import InvalidStatus

    from asgi_ws import AuthMiddleware
    from asgi_ws.auth import SignedTicket

    tickets = SignedTicket(secret_keys=["a-ticket-signing-key-of-32-bytes!"], max_age=1)
    revoked: set[str] = set()
    app = AuthMiddleware(
        resume_app.make_app(), backend=tickets, authorize=lambda scope, identity: identity.user.identity not in revoked
    )
    async with serve(app) as server:
        stream = Stream()
        ticket = tickets.issue("alice")
        ws = await opened(server.ws_url(f"/?ticket={ticket}"), stream)
        ws.transport.abort()
        await asyncio.sleep(2.1)  # the ticket (not the session) has expired
        with pytest.raises(InvalidStatus) as refused_expired:
            await connect(stream.url(server.ws_url(f"/?ticket={ticket}")))
        assert refused_expired.value.response.status_code == 401
        revoked.add("alice")
        with pytest.raises(InvalidStatus) as refused_revoked:
            await connect(stream.url(server.ws_url(f"/?ticket={tickets.issue('alice')}")))
        assert refused_revoked.value.response.status_code == 403
        revoked.clear()  # a fresh ticket for the same user resumes the session
        ws = await opened(server.ws_url(f"/?ticket={tickets.issue('alice')}"), stream)
        assert stream.last("resumed")["id"] == stream.session_id


async def test_room_memberships_come_back_with_the_session() -> None:
    async with serve(resume_app.make_app()) as server:
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("join lobby")
        await ws.send("publish lobby one")
        await read_until(ws, stream, got(2))
        ws.transport.abort()
        ws = await opened(server.ws_url("/"), stream)
        assert stream.last("resumed")["rooms"] == ["lobby"]
        assert stream.last("resumed")["room_gap"] is True  # memory:// without ?history=N
        await ws.send("publish lobby two")
        await read_until(ws, stream, got(3))
        assert stream.data == ["joined lobby", "one", "two"]
        await ws.close()


async def test_room_messages_published_while_away_are_filled_in_from_the_history() -> None:
    async with serve(resume_app.make_app(broker="memory://?history=1000")) as server:
        stream, other = Stream(), Stream()
        ws = await opened(server.ws_url("/"), stream)
        publisher = await opened(server.ws_url("/"), other)
        await ws.send("join feed")
        await publisher.send("join feed")
        await read_until(ws, stream, got(1))
        await read_until(publisher, other, got(1))
        await publisher.send("count feed 10")
        await read_until(ws, stream, got(4))
        await ws.close(1001)  # the server sees it leave: nobody holds the session any more
        await publisher.send("count feed 30")  # 0-29 again, while the first client is away
        await read_until(publisher, other, got(41))
        ws = await opened(server.ws_url("/"), stream)
        resumed = stream.last("resumed")
        assert resumed["rooms"] == ["feed"] and resumed["room_gap"] is False
        await read_until(ws, stream, got(41))
        await publisher.send("publish feed live")
        await read_until(ws, stream, got(42))
        assert stream.data == ["joined feed", *map(str, range(10)), *map(str, range(30)), "live"]
        await ws.close()
        await publisher.close()


async def test_a_room_history_too_short_for_the_gap_is_refused() -> None:
    async with serve(resume_app.make_app(broker="memory://?history=5")) as server:
        stream, other = Stream(), Stream()
        ws = await opened(server.ws_url("/"), stream)
        publisher = await opened(server.ws_url("/"), other)
        await ws.send("join feed")
        await read_until(ws, stream, got(1))
        await ws.close(1001)  # going away (not 1000): the session stays resumable, but no socket holds it
        await publisher.send("count feed 20")
        await publisher.send("join feed")
        await read_until(publisher, other, got(1))
        again, fresh, failed = await refused(stream.url(server.ws_url("/")))
        assert failed["code"] == "gap_too_old" and "feed" in failed["reason"]
        await publisher.send("publish feed after")  # the fresh session is in no room
        await again.send("emit 1 2")
        await read_until(again, fresh, got(1))
        assert fresh.data == ["1"]
        await publisher.close()


# -- across worker processes, on the machine's Redis --------------------------------------------


def two_servers(redis_url: str, history: int = 0, **env: str) -> Any:
    shared = {
        "ASGI_WS_TEST_STORE": f"{redis_url}?prefix=asgi_ws_test_{uuid.uuid4().hex[:8]}:",
        "ASGI_WS_TEST_BROKER": f"{redis_url}?history={history}" if history else redis_url,
        "ASGI_WS_TEST_NS": f"resume{uuid.uuid4().hex[:8]}",
        **env,
    }
    env_all = {**os.environ, **shared}
    return uvicorn_process("tests.resume.resume_app:app", env=env_all), uvicorn_process(
        "tests.resume.resume_app:app", env=env_all
    )


@pytest.mark.parametrize("fault", ["abort", "kill"])
async def test_resume_on_another_process_after_a_cut_or_a_crash(redis_url: str, fault: str) -> None:
    one_cm, two_cm = two_servers(redis_url)
    with one_cm as one, two_cm as two:
        stream = Stream()
        ws = await opened(f"ws://127.0.0.1:{one.port}/", stream)
        await ws.send("emit 1 3000")
        await read_until(ws, stream, got(1000))
        if fault == "kill":
            one.proc.send_signal(signal.SIGKILL)
            one.proc.wait(10)
        else:
            ws.transport.abort()
        ws = await opened(f"ws://127.0.0.1:{two.port}/", stream)
        replay = stream.last("resumed")["replay"]
        await read_until(ws, stream, got(stream.last("resumed")["seq"] + replay))
        # After a crash the rest of the stream was never produced: ask for it from where we are.
        last = len(stream.data)
        if last < 2999:
            await ws.send(f"emit {last + 1} 3000")
        await read_until(ws, stream, got(2999))
        assert stream.data == expected(1, 3000)
        if fault == "abort":
            assert replay + 1000 <= 2999
        await ws.close()


async def test_a_hundred_clients_resume_on_another_process_with_their_rooms(redis_url: str) -> None:
    one_cm, two_cm = two_servers(redis_url)
    with one_cm as one, two_cm as two:
        streams = [Stream() for _ in range(100)]
        sockets = await asyncio.gather(*(opened(f"ws://127.0.0.1:{one.port}/", s) for s in streams))
        for ws in sockets:
            await ws.send("join feed")
        await asyncio.gather(*(read_until(ws, s, got(1)) for ws, s in zip(sockets, streams, strict=True)))
        mine = Stream()
        publisher = await opened(f"ws://127.0.0.1:{one.port}/", mine)
        await publisher.send("join feed")
        for i in range(20):
            await publisher.send(f"publish feed {i}")
        # Once the publisher has all 20 back, every member was offered them on server one.
        await read_until(publisher, mine, got(21))
        await publisher.close()
        for ws in sockets:
            ws.transport.abort()  # mid-stream: most clients have read only part of the 20
        sockets = await asyncio.gather(*(opened(f"ws://127.0.0.1:{two.port}/", s) for s in streams))
        try:
            await asyncio.gather(*(read_until(ws, s, got(21)) for ws, s in zip(sockets, streams, strict=True)))
        except TimeoutError:
            print("DEBUG", sorted(len(s.data) for s in streams), [s.data[-3:] for s in streams if len(s.data) < 21])
            raise
        for i in range(20, 30):
            await sockets[-1].send(f"publish feed {i}")
        await asyncio.gather(*(read_until(ws, s, got(31)) for ws, s in zip(sockets, streams, strict=True)))
        for s in streams:
            assert s.data == ["joined feed", *(str(i) for i in range(30))]
            assert s.last("resumed")["rooms"] == ["feed"]
        await asyncio.gather(*(ws.close() for ws in sockets))


@pytest.mark.parametrize("fault", ["abort", "kill"])
async def test_a_hundred_clients_miss_nothing_published_while_their_server_was_gone(redis_url: str, fault: str) -> None:
    """Rooms on Redis with history: room messages published during the outage are filled in."""
    one_cm, two_cm = two_servers(redis_url, history=10_000)
    with one_cm as one, two_cm as two:
        sockets, streams = await members(f"ws://127.0.0.1:{one.port}/", 100, "feed")
        (publisher,), (mine,) = await members(f"ws://127.0.0.1:{two.port}/", 1, "feed")  # on the server that stays
        await publisher.send("count feed 100")
        await read_until(publisher, mine, got(101))
        if fault == "kill":
            one.proc.send_signal(signal.SIGKILL)
            one.proc.wait(10)
        else:
            for ws in sockets:
                ws.transport.abort()
        # While the hundred are away, and while they come back: more messages.
        await publisher.send("count feed 200")
        sockets = await asyncio.gather(*(opened(f"ws://127.0.0.1:{two.port}/", s) for s in streams))
        await read_until(publisher, mine, got(301))
        await asyncio.gather(*(read_until(ws, s, got(301), 30) for ws, s in zip(sockets, streams, strict=True)))
        expected_feed = ["joined feed", *map(str, range(100)), *map(str, range(200))]
        for s in streams:
            if s.data != expected_feed:
                print("DEBUG", s.last("resumed"), s.data[95:130], len(s.data))
            assert s.data == expected_feed
            assert s.last("resumed")["room_gap"] is False
        await asyncio.gather(*(ws.close() for ws in sockets))
        await publisher.close()


async def test_resume_middleware_options_are_checked() -> None:
    from asgi_ws.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError):
        ResumeMiddleware(resume_app.numbers_app(Rooms()), secret_keys=[], store="memory://")
    with pytest.raises(ConfigurationError):
        ResumeMiddleware(resume_app.numbers_app(Rooms()), secret_keys=["k"], window=0)
    with pytest.raises(ConfigurationError):
        ResumeMiddleware(resume_app.numbers_app(Rooms()), secret_keys=["k"], store="mongodb://x")
