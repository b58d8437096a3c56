"""The session stores' contract, on the memory store and on the machine's Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from asgi_ws.delivery import Membership
from asgi_ws.resume import MemorySessionStore, SessionStore
from asgi_ws.resume.frames import frame_of, message_of
from asgi_ws.resume.stores.base import Entry, Run, Write, decode_rooms, extents
from asgi_ws.resume.stores.redis import RedisSessionStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
        return
    redis_url = request.getfixturevalue("redis_url")
    redis_store = RedisSessionStore(f"{redis_url}?prefix=asgi_ws_store_test_{uuid.uuid4().hex[:8]}:")
    yield redis_store
    await redis_store.close()


def frames(start: int, stop: int) -> list[bytes]:
    return [b"t" + str(i).encode() for i in range(start, stop)]


async def append(
    store: SessionStore,
    session_id: str,
    owner: str,
    first_seq: int,
    items: list[bytes] | Run,
    keep_from: int,
    ttl: float,
    cursors: dict[str, str] | None = None,
) -> bool | None:
    """One entry written (frames, a run or an end)."""
    return await store.write(Write(session_id, owner, [(first_seq, items)], keep_from, ttl, cursors))


def flat(entries: list[Entry], after: int) -> list[bytes]:
    """The stored frames after seq ``after`` of entries of frames only."""
    out = []
    for seq, item in entries:
        assert isinstance(item, list)
        out += [frame for offset, frame in enumerate(item) if seq + offset > after]
    return out


async def read(store: SessionStore, session_id: str, after: int) -> list[bytes]:
    return flat(await store.read(session_id, after), after)


async def test_frames_are_read_back_after_any_seq(store: SessionStore) -> None:
    await store.create("s", "owner-1", "alice", 60)
    assert await append(store, "s", "owner-1", 1, frames(1, 4), 1, 60)
    assert await append(store, "s", "owner-1", 4, frames(4, 10), 1, 60, {"lobby": "0-7"})
    for after in range(10):
        assert await read(store, "s", after) == frames(after + 1, 10)
    state = await store.inspect("s")
    assert state is not None and (state.identity, state.head, state.first, state.generation) == ("alice", 9, 1, 0)
    assert state.cursors == {"lobby": "0-7"}


async def test_appends_must_continue_the_sequence(store: SessionStore) -> None:
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 2, frames(2, 3), 1, 60) is None  # a gap: not what this owner wrote
    assert await append(store, "s", "o", 1, frames(1, 3), 1, 60)
    assert await append(store, "s", "o", 2, frames(2, 3), 1, 60) is None  # a repeat
    assert await read(store, "s", 0) == frames(1, 3)


async def test_a_takeover_moves_ownership_and_the_old_owner_can_write_no_more(store: SessionStore) -> None:
    await store.create("s", "old", None, 60)
    assert await append(store, "s", "old", 1, frames(1, 3), 1, 60)
    taken = await store.take_over("s", "new", 0, 1, 60)
    assert taken.refused is None and taken.state is not None and flat(taken.state.entries, 1) == frames(2, 3)
    assert (taken.state.head, taken.state.generation) == (2, 1)
    assert await append(store, "s", "old", 3, frames(3, 4), 1, 60) is False  # replaced, not lost
    assert await store.touch("s", "old", 1, 60) is False
    assert await append(store, "s", "new", 3, frames(3, 4), 1, 60) is True
    await store.delete("s", "old")  # not the owner: nothing happens
    assert await store.inspect("s") is not None
    await store.delete("s", "new")
    assert await store.inspect("s") is None
    assert await append(store, "s", "new", 4, frames(4, 5), 1, 60) is None  # gone, not replaced
    assert await store.touch("s", "new", 1, 60) is None
    assert (await store.take_over("s", "x", 1, 0, 60)).refused == "unknown_session"
    assert await store.inspect("never-created") is None


@pytest.mark.parametrize(
    ("generation", "after", "refused"),
    [(0, 3, "token_used"), (2, 3, "unknown_session"), (1, 6, "seq_ahead"), (1, 1, "gap_too_old")],
)
async def test_a_refused_takeover_changes_nothing(
    store: SessionStore, generation: int, after: int, refused: str
) -> None:
    await store.create("s", "first", None, 60)
    assert await append(store, "s", "first", 1, frames(1, 3), 1, 60)
    assert (await store.take_over("s", "holder", 0, 2, 60)).refused is None  # generation 1, held by "holder"
    assert await append(store, "s", "holder", 3, frames(3, 6), 3, 60)  # frames 3-5; 1 and 2 acknowledged
    before = await store.inspect("s")
    taken = await store.take_over("s", "intruder", generation, after, 60)
    assert (taken.refused, taken.state) == (refused, None)
    assert await store.inspect("s") == before
    assert await append(store, "s", "holder", 6, frames(6, 7), 1, 60) is True  # still the holder's
    assert await append(store, "s", "intruder", 7, frames(7, 8), 1, 60) is False


async def test_trimming_keeps_every_frame_at_or_after_keep_from(store: SessionStore) -> None:
    await store.create("s", "o", None, 60)
    for start in range(1, 100, 10):  # ten batches of ten
        assert await append(store, "s", "o", start, frames(start, start + 10), 1, 60)
    assert await store.touch("s", "o", 35, 60, {"lobby": Membership("raw", {"name": "ann"}, True)}, {"lobby": "3-0"})
    state = await store.inspect("s")
    assert (
        state is not None and state.head == 100 and state.rooms == {"lobby": Membership("raw", {"name": "ann"}, True)}
    )
    assert 1 < state.first <= 35  # whole batches are dropped in Redis, single frames in memory
    assert await read(store, "s", 34) == frames(35, 101)
    assert await store.touch("s", "o", 101, 60)  # everything acknowledged
    state = await store.inspect("s")
    assert state is not None and state.first == 101 and await read(store, "s", 100) == []
    assert await append(store, "s", "o", 101, frames(101, 102), 101, 60)
    assert await read(store, "s", 100) == frames(101, 102)


async def test_binary_and_text_frames_round_trip(store: SessionStore) -> None:
    messages = [
        {"type": "websocket.send", "text": "héllo \U0001f600"},
        {"type": "websocket.send", "bytes": b"\x00\x01\xff"},
        {"type": "websocket.send", "text": ""},
        {"type": "websocket.send", "bytes": b""},
    ]
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, [frame_of(m) for m in messages], 1, 60)
    assert [message_of(f) for f in await read(store, "s", 0)] == messages
    with pytest.raises(UnicodeEncodeError):  # no socket could send it: refused before it is numbered
        frame_of({"type": "websocket.send", "text": "lone \udcff"})


async def test_a_rooms_cursor_only_moves_forward(store: SessionStore) -> None:
    """A touch sent while an append was in flight carries an older cursor: it must not win."""
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, frames(1, 3), 1, 60, {"feed": "1700000000000-5"})
    assert await store.touch("s", "o", 1, 60, None, {"feed": "1700000000000-2", "other": "0-1"})
    assert await append(store, "s", "o", 3, frames(3, 4), 1, 60, {"feed": "1700000000001-0"})
    state = await store.inspect("s")
    assert state is not None and state.cursors == {"feed": "1700000000001-0", "other": "0-1"}


async def test_many_sessions_are_stored_in_one_call(store: SessionStore) -> None:
    for i in range(3):
        await store.create(f"s{i}", "o", None, 60)
    results = await store.write_many(
        [
            Write("s0", "o", [(1, frames(1, 3))], 1, 60.0),
            Write("s1", "intruder", [(1, frames(1, 2))], 1, 60.0),  # not the owner: refused alone
            Write("s2", "o", [(1, frames(1, 4))], 1, 60.0, {"r": "0-3"}),
        ]
    )
    assert list(results) == [True, False, True]
    assert await read(store, "s0", 0) == frames(1, 3) and await read(store, "s1", 0) == []
    assert await read(store, "s2", 1) == frames(2, 4)


def test_frames_follow_a_reused_and_changed_message_dict() -> None:
    message: dict[str, object] = {"type": "websocket.send", "text": "one"}
    assert frame_of(message) == b"tone"
    message["text"] = "two"  # an application reusing its dict
    assert frame_of(message) == b"ttwo"
    message.pop("text")
    message["bytes"] = bytearray(b"x")
    assert frame_of(message) == b"bx"
    message["bytes"][0] = ord("y")  # type: ignore[index]  # mutable payloads are never remembered
    assert frame_of(message) == b"by"


async def test_of_several_takeovers_with_one_token_exactly_one_wins(store: SessionStore) -> None:
    """A token names one generation: racing resumes with it cannot both take the session over."""
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, frames(1, 3), 1, 60)
    results = await asyncio.gather(*(store.take_over("s", f"claimant-{i}", 0, 2, 60) for i in range(5)))
    assert sorted(r.refused or "taken" for r in results) == ["taken", *["token_used"] * 4]
    winner = next(i for i, r in enumerate(results) if r.refused is None)
    assert await append(store, "s", f"claimant-{winner}", 3, frames(3, 4), 1, 60) is True


async def test_runs_open_close_and_end_the_log(store: SessionStore) -> None:
    """A run's extent is up to the next entry; the last one goes on (open); an end closes it."""
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, frames(1, 3), 1, 60)
    assert await append(store, "s", "o", 3, Run("feed", "1700-4", "channel"), 1, 60)
    state = await store.inspect("s", 0)
    assert state is not None and (state.head, state.open) == (2, 3)
    assert [e for _, _, e in extents(state.entries, state)][-1] == Run("feed", "1700-4", "channel")
    assert extents(state.entries, state)[-1][:2] == (3, None)  # open: it goes on
    # The run numbered 3..7 (no write), then a frame at 8: the entry continues the log inside the run.
    assert await append(store, "s", "o", 8, frames(8, 9), 1, 60, {"feed": "1700-9"})
    assert await append(store, "s", "o", 9, Run("news", "55-0", "raw"), 1, 60)
    assert await append(store, "s", "o", 12, [], 1, 60)  # news left after 3 messages (9..11)
    state = await store.inspect("s", 4)
    assert state is not None and (state.head, state.open, state.cursors) == (11, 0, {"feed": "1700-9"})
    assert [(first, last) for first, last, _ in extents(state.entries, state)] == [(3, 7), (8, 8), (9, 11), (12, 11)]
    assert await append(store, "s", "o", 11, frames(11, 12), 1, 60) is None  # not after the end: refused
    assert (await store.take_over("s", "x", 0, 11, 60)).refused is None
    assert (await store.take_over("s", "y", 1, 12, 60)).refused == "seq_ahead"


async def test_a_count_inside_the_open_run_is_left_to_the_resume(store: SessionStore) -> None:
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, Run("feed", "1700-0", "raw"), 1, 60)
    taken = await store.take_over("s", "new", 0, 500, 60)  # the room's history says whether 500 is too many
    assert taken.refused is None and taken.state is not None and taken.state.open == 1
    assert taken.state.entries == [(1, Run("feed", "1700-0", "raw"))]
    assert await append(store, "s", "new", 501, frames(501, 502), 1, 60)  # frames after seq 500 of the run
    assert await append(store, "s", "new", 300, frames(300, 301), 1, 60) is None


async def test_acknowledged_runs_are_trimmed_but_not_the_open_one(store: SessionStore) -> None:
    await store.create("s", "o", None, 60)
    assert await append(store, "s", "o", 1, Run("a", "1-0", "raw"), 1, 60)
    assert await append(store, "s", "o", 11, Run("b", "2-0", "raw"), 1, 60)
    assert await store.touch("s", "o", 50, 60)  # the client has 49: run a (1..10) goes, run b stays open
    state = await store.inspect("s", 49)
    assert state is not None and state.first == 11 and state.entries == [(11, Run("b", "2-0", "raw"))]


def test_memberships_stored_by_an_earlier_version_are_read() -> None:
    assert decode_rooms('{"lobby": "channel"}') == {"lobby": Membership("channel", {})}
    assert decode_rooms('{"lobby": ["raw", {"n": 1}, true]}') == {"lobby": Membership("raw", {"n": 1}, True)}
    assert decode_rooms(None) == {}
