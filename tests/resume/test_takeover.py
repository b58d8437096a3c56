"""Who may take a session over: a refused resume touches nothing, a token serves one resume,
and a session the store lost is not reported as taken. Real uvicorn, real clients, memory
and Redis stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from asgi_ws import ResumeMiddleware
from asgi_ws.resume import MemorySessionStore, SessionStore
from asgi_ws.resume.stores.redis import RedisSessionStore
from tests.resume import resume_app
from tests.resume.wire import Stream, expected, opened, read_until, refused
from tests.support.server import RunningServer, serve


def got(n: int) -> Any:
    return lambda s: len(s.data) >= n


@contextlib.asynccontextmanager
async def resumable(store: str | SessionStore, **options: Any) -> AsyncIterator[tuple[ResumeMiddleware, RunningServer]]:
    app = resume_app.make_app(store, **options)
    try:
        async with serve(app) as server:
            yield app, server
    finally:
        await app.close()


async def still_holds(ws: ClientConnection, stream: Stream, upto: int) -> None:
    """``ws`` is open, in its session, and gets the next frames in order (up to ``upto``)."""
    start = len(stream.data) + 1
    await ws.send(f"emit {start} {upto + 1}")
    await read_until(ws, stream, got(upto))
    assert stream.data == expected(1, upto + 1)
    assert ws.close_code is None


async def lose(app: ResumeMiddleware, session_id: str) -> None:
    """The store loses the session (a FLUSHALL, an eviction, a restart without persistence)."""
    store = app.store
    if isinstance(store, MemorySessionStore):
        del store._records[session_id]
    else:
        assert isinstance(store, RedisSessionStore)
        keys = [key async for key in store._redis.scan_iter(match=f"{store.prefix}*")]
        assert keys, "the session was in Redis"
        await store._redis.delete(*keys)


def signed(data: dict[str, Any]) -> str:
    """A token signed with the server's own key (what the server would issue for ``data``)."""
    return str(URLSafeTimedSerializer(resume_app.KEYS, salt="asgi_ws.resume").dumps(data))


@pytest.mark.parametrize("case", ["seq_ahead", "gap_too_old", "token_used", "bad_request", "identity_mismatch"])
async def test_a_refused_resume_leaves_the_socket_holding_the_session_alone(store_url: str, case: str) -> None:
    async with resumable(store_url, max_messages=10) as (_, server):
        base = server.ws_url("/")
        holder = Stream()
        ws = await opened(base, holder)
        first_token = holder.token  # generation 0, as a URL log would have kept it
        for start in range(1, 21, 5):  # four batches: Redis trims whole batches
            await ws.send(f"emit {start} {start + 5}")
            await read_until(ws, holder, got(start + 4))
        ws.transport.abort()
        ws = await opened(base, holder)  # resumed: generation 1, and this socket holds the session
        assert holder.last("resumed")["replay"] == 0
        token, seq = holder.token, "20"
        if case == "seq_ahead":
            seq = "21"
        elif case == "gap_too_old":
            seq = "5"  # max_messages=10: the session keeps 11-20
        elif case == "token_used":
            token = first_token
        elif case == "bad_request":
            seq = "+20"
        else:
            token = signed({"s": holder.session_id, "u": "mallory", "g": 1})
        _, fresh, failed = await refused(f"{base}?ws_resume={token}&ws_seq={seq}")
        assert failed["code"] == case and fresh.session_id != holder.session_id
        await still_holds(ws, holder, 25)
        ws.transport.abort()  # and the session is intact: it resumes where it was
        ws = await opened(base, holder)
        assert holder.last("resumed")["seq"] == 25
        await still_holds(ws, holder, 27)


async def test_of_simultaneous_resumes_with_one_token_exactly_one_takes_the_session(store_url: str) -> None:
    async with resumable(store_url) as (_, server):
        base = server.ws_url("/")
        holder = Stream()
        ws = await opened(base, holder)
        await ws.send("emit 1 6")
        await read_until(ws, holder, got(5))
        url = holder.url(base)
        claimants = [Stream() for _ in range(4)]
        sockets = await asyncio.gather(*(opened(url, s) for s in claimants))
        answers = sorted(s.controls[0]["$ws"] for s in claimants)
        assert answers == ["resume_failed", "resume_failed", "resume_failed", "resumed"]
        assert {s.last("resume_failed")["code"] for s in claimants if s.controls[0]["$ws"] == "resume_failed"} == {
            "token_used"
        }
        with pytest.raises(ConnectionClosed) as closed:  # a real takeover: the holder is told so
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        winner, stream = next(
            (w, s) for w, s in zip(sockets, claimants, strict=True) if s.controls[0]["$ws"] == "resumed"
        )
        stream.data = list(holder.data)
        await still_holds(winner, stream, 8)


async def test_a_token_serves_one_resume_and_renewed_tokens_carry_the_new_generation(store_url: str) -> None:
    async with resumable(store_url, window=3) as (_, server):  # a fresh token every second
        base = server.ws_url("/")
        owner = Stream()
        ws = await opened(base, owner)
        await ws.send("emit 1 4")
        await read_until(ws, owner, got(3))
        captured = owner.url(base)  # the URL the next resume uses: a proxy may log it
        ws.transport.abort()
        ws = await opened(captured, owner)
        assert owner.last("resumed")["seq"] == 3
        _, _, failed = await refused(captured)  # replayed by someone who read the log
        assert failed["code"] == "token_used" and "already used" in failed["reason"]
        await still_holds(ws, owner, 5)
        resumed_token = owner.token
        renewals = len([c for c in owner.controls if c["$ws"] == "session"])
        await read_until(ws, owner, lambda s: len([c for c in s.controls if c["$ws"] == "session"]) > renewals)
        assert owner.token != resumed_token
        ws.transport.abort()
        ws = await opened(base, owner)  # the renewed token resumes: it names the current generation
        assert owner.last("resumed")["seq"] == 5
        _, _, failed = await refused(f"{base}?ws_resume={resumed_token}&ws_seq=5")
        assert failed["code"] == "token_used"
        await still_holds(ws, owner, 6)


@pytest.mark.parametrize("trigger", ["send", "renewal"])
async def test_a_session_the_store_lost_closes_with_4404_not_4409(store_url: str, trigger: str) -> None:
    async with resumable(store_url, window=3) as (app, server):
        stream = Stream()
        ws = await opened(server.ws_url("/"), stream)
        await ws.send("emit 1 3")
        await read_until(ws, stream, got(2))
        assert stream.session_id is not None
        await lose(app, stream.session_id)
        if trigger == "send":  # storing the next frame finds the session gone
            await ws.send("emit 3 4")
        # else: the renewal, within a second, finds it gone
        with pytest.raises(ConnectionClosed) as closed:
            await read_until(ws, stream, got(99), timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4404, "session lost by the store")
        _, _, failed = await refused(stream.url(server.ws_url("/")))  # resuming it is pointless
        assert failed["code"] == "unknown_session"


class HeldTakeover(MemorySessionStore):
    """A memory store whose takeovers wait for ``proceed``: the window between a resume's
    inspection and its takeover, held open."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.proceed = asyncio.Event(), asyncio.Event()

    async def take_over(self, *args: Any, **kwargs: Any) -> Any:
        self.reached.set()
        await self.proceed.wait()
        return await super().take_over(*args, **kwargs)


async def test_rooms_the_old_socket_joins_or_leaves_before_the_takeover_follow_the_session() -> None:
    store = HeldTakeover()
    async with resumable(store) as (_, server):
        base = server.ws_url("/")
        holder, publisher = Stream(), Stream()
        ws = await opened(base, holder)
        sender = await opened(base, publisher)
        for command in ("join a", "join b"):
            await ws.send(command)
            await read_until(ws, holder, got(len(holder.data) + 1))
        resuming = asyncio.create_task(opened(holder.url(base), holder))
        await asyncio.wait_for(store.reached.wait(), 5)  # inspected, rooms a and b rejoined
        await ws.send("join c")  # the old socket, still holding the session, changes its rooms
        await read_until(ws, holder, got(len(holder.data) + 1))
        await ws.send("leave b")
        record = store._records[holder.session_id]  # type: ignore[index]
        async with asyncio.timeout(5):
            while set(record.rooms) != {"a", "c"}:
                await asyncio.sleep(0.01)
        store.proceed.set()
        ws = await asyncio.wait_for(resuming, 5)
        assert holder.last("resumed")["rooms"] == ["a", "c"]
        for room in ("b", "c"):
            await sender.send(f"publish {room} to-{room}")
        await read_until(ws, holder, lambda s: "to-c" in s.data)
        assert "to-b" not in holder.data
