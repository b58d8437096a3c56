"""Coalesced history reads (asgi_ws/rooms/replay.py): every request gets exactly what the
broker's history holds after its own position, with far fewer broker reads than requests; a
request never takes its answer from a read sent before it asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_ws import Rooms
from asgi_ws.brokers import MemoryBroker
from asgi_ws.brokers.base import START, position_key
from asgi_ws.exceptions import BrokerClosed, BrokerError
from asgi_ws.rooms import envelope
from asgi_ws.rooms.members import RoomsStats
from asgi_ws.rooms.replay import Decoded, HistoryReads
from tests.rooms.test_rooms import close_all, members

CHANNEL = "asgi_ws:lobby"


def reads_of(broker: MemoryBroker, stats: RoomsStats | None = None) -> tuple[HistoryReads, set[asyncio.Task[Any]]]:
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        return task

    def malformed(what: str, reason: object) -> None:
        raise AssertionError(f"malformed {what}: {reason}")

    return HistoryReads(broker, stats or RoomsStats(), malformed, spawn), tasks


async def publish(broker: MemoryBroker, count: int) -> list[str]:
    positions = []
    for i in range(count):
        at = await broker.publish(CHANNEL, envelope.encode("text", f"m{i}".encode(), "node"))
        assert at is not None
        positions.append(at)
    return positions


async def alone(broker: MemoryBroker, after: str) -> list[Decoded] | None:
    """What one uncoalesced read answers (the reference)."""
    entries = await broker.history(CHANNEL, after)
    if entries is None:
        return None
    return [(p, *envelope.decode(data)[:2]) for p, data in entries]  # type: ignore[misc]


def positions_around(epoch: int, kept_from: int, last: int) -> st.SearchStrategy[str]:
    """Positions a resuming client may name: in the kept range, trimmed, past the end, of an
    older or a newer epoch, and before anything."""
    return st.one_of(
        st.integers(0, last + 3).map(lambda n: f"{epoch}-{n}"),
        st.integers(max(0, kept_from - 3), last).map(lambda n: f"{epoch}-{n}"),
        st.integers(0, 5).map(lambda n: f"{epoch - 1}-{n}"),
        st.integers(0, 5).map(lambda n: f"{epoch + 1}-{n}"),
        st.just(START),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kept=st.integers(1, 12), published=st.integers(0, 20))
def test_every_request_gets_exactly_its_suffix_with_far_fewer_reads(
    data: st.DataObject, kept: int, published: int
) -> None:
    async def drive() -> None:
        broker = MemoryBroker(f"memory://?history={kept}")
        await broker.connect(lambda *args: None)
        positions = await publish(broker, published)
        epoch = position_key(positions[0])[0] if positions else 1_700_000_000_000
        asked = data.draw(
            st.lists(positions_around(epoch, max(1, published - kept + 1), published), min_size=1, max_size=40)
        )
        stats = RoomsStats()
        reads, _ = reads_of(broker, stats)
        answers = await asyncio.gather(*(reads.after(CHANNEL, after) for after in asked))
        for after, answer in zip(asked, answers, strict=True):
            assert answer == await alone(broker, after), after
        assert stats.history_requests == len(asked)
        # One read serves every request of its epoch; a trimmed position or another epoch
        # costs at most one read of its own.
        distinct_other = {a for a in asked if position_key(a)[0] != epoch or answers[asked.index(a)] is None}
        assert stats.history_reads <= 1 + len(distinct_other)
        await broker.close()

    asyncio.run(drive())


async def test_500_requests_at_once_are_one_read() -> None:
    broker = MemoryBroker("memory://?history=1000")
    await broker.connect(lambda *args: None)
    positions = await publish(broker, 600)
    stats = RoomsStats()
    reads, _ = reads_of(broker, stats)
    asked = [positions[i % 600] for i in range(500)]
    answers = await asyncio.gather(*(reads.after(CHANNEL, after) for after in asked))
    assert stats.history_reads == 1 and stats.history_requests == 500
    for after, answer in zip(asked, answers, strict=True):
        assert answer == await alone(broker, after)


class _Gated(MemoryBroker):
    """A memory broker whose history reads wait for a gate, counted."""

    def __init__(self) -> None:
        super().__init__("memory://?history=100")
        self.gate = asyncio.Event()
        self.asked: list[str] = []
        self.fail: BaseException | None = None

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        self.asked.append(after)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return await super().history(channel, after)


async def test_a_request_never_takes_a_read_sent_before_it_asked() -> None:
    broker = _Gated()
    await broker.connect(lambda *args: None)
    positions = await publish(broker, 3)
    reads, _ = reads_of(broker)
    first = asyncio.create_task(reads.after(CHANNEL, positions[0]))
    while not broker.asked:  # the first read is sent
        await asyncio.sleep(0)
    await publish(broker, 1)  # published after that read was sent (a member joining now gets it live, or from here)
    second = asyncio.create_task(reads.after(CHANNEL, positions[1]))
    third = asyncio.create_task(reads.after(CHANNEL, positions[0]))
    await asyncio.sleep(0)
    broker.gate.set()
    answers = await asyncio.gather(first, second, third)
    assert broker.asked == [positions[0], positions[0]]  # the second read: from the earliest asked meanwhile
    assert answers[0] == await alone(broker, positions[0]) or len(answers[0] or []) == 2
    assert [p for p, *_ in answers[1] or []] == [positions[2], (await broker.last_position(CHANNEL))]
    assert answers[2] == await alone(broker, positions[0]) and len(answers[2] or []) == 3


async def test_an_error_reaches_every_request_of_its_read_and_the_next_read_is_fresh() -> None:
    broker = _Gated()
    await broker.connect(lambda *args: None)
    positions = await publish(broker, 3)
    reads, _ = reads_of(broker)
    broker.fail = BrokerError("down")
    broker.gate.set()
    results = await asyncio.gather(*(reads.after(CHANNEL, p) for p in positions), return_exceptions=True)
    assert all(isinstance(r, BrokerError) for r in results)
    broker.fail = None
    assert await reads.after(CHANNEL, positions[0]) == await alone(broker, positions[0])


async def test_a_cancelled_request_leaves_the_read_to_the_others() -> None:
    broker = _Gated()
    await broker.connect(lambda *args: None)
    positions = await publish(broker, 3)
    reads, _ = reads_of(broker)
    gone = asyncio.create_task(reads.after(CHANNEL, positions[0]))
    stays = asyncio.create_task(reads.after(CHANNEL, positions[0]))
    await asyncio.sleep(0)
    gone.cancel()
    broker.gate.set()
    assert await stays == await alone(broker, positions[0])
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_requests_waiting_when_the_reader_is_cancelled_get_broker_closed() -> None:
    broker = _Gated()
    await broker.connect(lambda *args: None)
    positions = await publish(broker, 3)
    reads, tasks = reads_of(broker)
    waiting = [asyncio.create_task(reads.after(CHANNEL, p)) for p in positions]
    while not broker.asked:
        await asyncio.sleep(0)
    later = asyncio.create_task(reads.after(CHANNEL, positions[0]))  # gathers for the next read
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    for task in [*waiting, later]:
        with pytest.raises(BrokerClosed):
            await task


async def test_rooms_count_the_reads_of_concurrent_missed_calls() -> None:
    async with Rooms("memory://?history=100", recent=0) as rooms:
        for i in range(10):
            await rooms.publish("lobby", f"m{i}")
        last = await rooms.broker.last_position("asgi_ws:lobby")
        epoch = position_key(last)[0]
        asked = [f"{epoch}-{n % 10}" for n in range(200)]
        answers = await asyncio.gather(*(rooms.missed("lobby", "raw", after) for after in asked))
        for after, answer in zip(asked, answers, strict=True):
            assert [m["text"] for _, m in answer or []] == [f"m{i}" for i in range(position_key(after)[1], 10)]
        assert rooms.stats.history_requests == 200 and rooms.stats.history_reads == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    kept=st.integers(1, 12),
    recent=st.integers(1, 8),
    before=st.integers(0, 15),
    rounds=st.lists(st.integers(0, 6), min_size=1, max_size=4),
)
def test_missed_through_the_seeded_memory_equals_the_broker_history(
    data: st.DataObject, kept: int, recent: int, before: int, rounds: list[int]
) -> None:
    """A member keeps the room subscribed; what history reads seed into memory, and what
    arrives live after it, answer later resumes exactly as the broker's history would."""

    async def drive() -> None:
        async with Rooms(f"memory://?history={kept}", recent=recent) as rooms:
            broker = rooms.broker
            assert isinstance(broker, MemoryBroker)
            sent: list[Decoded] = []  # everything published, with its position

            async def send(text: str) -> None:
                await rooms.publish("lobby", text)
                sent.append((await broker.last_position(CHANNEL), "text", text.encode()))

            for i in range(before):  # before anyone here subscribed: only the broker has them
                await send(f"b{i}")
            harnesses = await members(rooms, 1)
            n = before
            for more in rounds:
                for _ in range(more):
                    await send(f"m{n}")
                    n += 1
                last = await broker.last_position(CHANNEL)
                epoch = position_key(last)[0] if last != START else 1_700_000_000_000
                asked = data.draw(st.lists(positions_around(epoch, max(1, n - kept + 1), n), min_size=1, max_size=12))
                answers = await asyncio.gather(*(rooms._after("lobby", after) for after in asked))
                for after, answer in zip(asked, answers, strict=True):
                    reference = await alone(broker, after)
                    if reference is None and answer is not None:  # memory keeps more than the broker
                        assert answer == [e for e in sent if position_key(e[0]) > position_key(after)]
                        assert answer and position_key(answer[0][0])[1] == position_key(after)[1] + 1
                    else:
                        assert answer == reference, (after, rooms._rooms["lobby"].recent)
            await close_all(harnesses)

    asyncio.run(drive())


async def test_a_storm_on_a_subscribed_room_reads_the_broker_once() -> None:
    async with Rooms("memory://?history=1000") as rooms:
        for i in range(50):
            await rooms.publish("lobby", f"b{i}")
        harnesses = await members(rooms, 1)
        epoch = position_key(await rooms.broker.last_position(CHANNEL))[0]
        first = await asyncio.gather(*(rooms.missed("lobby", "raw", f"{epoch}-{n % 50}") for n in range(100)))
        later = await asyncio.gather(*(rooms.missed("lobby", "raw", f"{epoch}-{n % 50}") for n in range(100)))
        assert first == later
        assert rooms.stats.history_requests == 100 and rooms.stats.history_reads == 1  # the rest from memory
        await close_all(harnesses)
