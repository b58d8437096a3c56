"""Rooms on a broker with history: marks on deliveries, where a member's view starts, and the
newest messages kept in memory (``recent``) to give a resumed session what it missed."""

from __future__ import annotations

from typing import Any

import pytest

from asgi_ws import Rooms
from asgi_ws.brokers.base import START, position_key
from asgi_ws.brokers.history import previous
from asgi_ws.delivery import RoomMark
from tests.rooms.test_rooms import close_all, members


def refuse_history(rooms: Rooms, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the broker's history fail the test if read; returns the positions it was asked after."""
    asked: list[str] = []

    async def history(channel: str, after: str) -> Any:
        asked.append(after)
        raise AssertionError("read from the broker")

    monkeypatch.setattr(rooms.broker, "history", history)
    return asked


async def published(rooms: Rooms, count: int) -> list[str]:
    """Publish ``count`` messages to "lobby"; their positions."""
    positions = []
    for i in range(count):
        await rooms.publish("lobby", f"m{i}")
        positions.append(await rooms.broker.last_position("asgi_ws:lobby"))
    return positions


async def test_what_a_process_fanned_out_is_replayed_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Rooms("memory://?history=100", recent=10) as rooms:
        harnesses = await members(rooms, 1)
        positions = await published(rooms, 5)
        asked = refuse_history(rooms, monkeypatch)
        missed = await rooms.missed("lobby", "channel", positions[1])
        assert [p for p, _ in missed or []] == positions[2:]
        assert [m["text"] for _, m in missed or []] == [f'{{"channel":"lobby","data":"m{i}"}}' for i in (2, 3, 4)]
        assert await rooms.missed("lobby", "raw", positions[0], until=positions[-1]) is not None
        assert asked == []
        await close_all(harnesses)


async def test_the_broker_answers_what_memory_does_not_hold_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Rooms("memory://?history=100", recent=3) as rooms:
        harnesses = await members(rooms, 1)
        positions = await published(rooms, 5)  # only the last 3 are kept in memory
        real = rooms.broker.history
        asked = refuse_history(rooms, monkeypatch)
        for after, until in [
            (positions[0], None),  # the next one is no longer kept
            (positions[-1], None),  # nothing kept after it: the broker may have newer ones
            (positions[2], f"{position_key(positions[-1])[0]}-{position_key(positions[-1])[1] + 1}"),  # until beyond
        ]:
            with pytest.raises(AssertionError, match="read from the broker"):
                await rooms.missed("lobby", "raw", after, until)
        assert len(asked) == 3
        monkeypatch.setattr(rooms.broker, "history", real)
        assert [p for p, _ in await rooms.missed("lobby", "raw", positions[0]) or []] == positions[1:]
        await close_all(harnesses)


async def test_a_gap_in_what_a_process_got_empties_its_memory_of_the_room() -> None:
    async with Rooms("memory://?history=100", recent=10) as rooms:
        harnesses = await members(rooms, 1)
        positions = await published(rooms, 3)
        state = rooms._rooms["lobby"]
        epoch, number = position_key(positions[-1])
        state.remember(f"{epoch}-{number + 2}", f"{epoch}-{number + 1}", "text", b"late", 10)  # one lost
        assert [p for p, _, _ in state.recent or []] == [f"{epoch}-{number + 2}"]
        await close_all(harnesses)


async def test_nothing_is_kept_without_history_or_with_recent_0() -> None:
    for rooms in (Rooms("memory://"), Rooms("memory://?history=10", recent=0)):
        async with rooms:
            harnesses = await members(rooms, 1)
            await rooms.publish("lobby", "x")
            assert rooms._rooms["lobby"].recent is None
            await close_all(harnesses)
    with pytest.raises(ValueError):
        Rooms(recent=-1)


class Recorder:
    """A delivery sink that records what it is handed."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, RoomMark | None]] = []

    def deliver(self, message: Any, mark: RoomMark | None = None, /) -> bool:
        self.got.append((message, mark))
        return True


async def test_deliveries_carry_their_room_position_and_the_one_before() -> None:
    async with Rooms("memory://?history=10") as rooms:
        harnesses = await members(rooms, 1)
        conn = next(iter(rooms._members))
        recorder = Recorder()
        conn.sink = recorder
        await rooms.join("lobby", conn)  # the member's sink is read again
        await rooms.publish("lobby", "a")
        await rooms.publish("lobby", "b")
        marks = [mark for _, mark in recorder.got]
        assert all(mark is not None and mark.room == "lobby" for mark in marks)
        first, second = marks
        assert first is not None and second is not None
        assert second.prev == first.position and first.prev == previous(first.position)
        assert position_key(first.position) > position_key(START)
        await close_all(harnesses)
