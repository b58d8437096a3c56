"""Server-side subscriptions (Rooms.subscribe) on the memory broker: values, one broker
subscription shared with members, exclude and authorization, the buffer's policies, the
history seam of ``after=``, cancellation, concurrency, and the input they parse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_ws import ConfigurationError, PermissionDenied, Rooms, connection_of
from asgi_ws.brokers.base import position_key
from asgi_ws.rooms import HistoryGap, RoomMessage, Subscription, SubscriptionOverflow
from asgi_ws.rooms.envelope import payload_of, value_of
from asgi_ws.rooms.subscription import check_position, follows
from tests.rooms.test_history_rooms import refuse_history
from tests.rooms.test_rooms import close_all, members
from tests.support.asgi import ws_scope

WAIT = 10.0
HISTORY = "memory://?history=1000"


async def take(sub: Subscription, count: int, what: str = "messages") -> list[RoomMessage]:
    """The next ``count`` messages of ``sub``, within WAIT seconds."""
    got: list[RoomMessage] = []
    try:
        async with asyncio.timeout(WAIT):
            while len(got) < count:
                got.append(await anext(sub))
    except TimeoutError:
        raise AssertionError(f"{what}: {len(got)} of {count} within {WAIT} s: {got}") from None
    return got


def data(messages: list[RoomMessage]) -> list[Any]:
    return [m.data for m in messages]


def consecutive(messages: list[RoomMessage], after: str | None = None) -> bool:
    """Do the positions follow each other (from ``after``), one room history, no gap, no repeat?"""
    positions = [m.position for m in messages]
    if None in positions:
        return False
    pairs = zip(positions, [after, *positions], strict=False) if after else zip(positions[1:], positions, strict=False)
    return all(follows(p, q) for p, q in pairs)  # type: ignore[arg-type]


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for ``check()``; each round lets the loop run the Rooms' tasks."""
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


def left_nothing(rooms: Rooms) -> bool:
    return not rooms._rooms and not rooms._by_id and not rooms._by_channel


VALUES: list[Any] = ["text", b"\x00\xffbinary", {"a": [1, 2.5, None, True]}, [1, "two"], 3, None, False, ""]


@pytest.mark.parametrize("url", ["memory://", HISTORY])
async def test_a_subscription_gets_what_was_published_decoded_in_order_with_positions(url: str) -> None:
    async with Rooms(url) as rooms, rooms.subscribe("lobby") as sub:
        start = sub.position
        for value in VALUES:
            await rooms.publish("lobby", value)
        got = await take(sub, len(VALUES))
        assert data(got) == VALUES and all(m.room == "lobby" for m in got)
        if rooms.history:
            assert consecutive(got, after=start) and sub.position == got[-1].position
        else:
            assert [m.position for m in got] == [None] * len(VALUES) and sub.position is None
        assert sub.buffered == 0


async def test_members_and_subscriptions_share_one_broker_subscription_and_leave_none() -> None:
    async with Rooms() as rooms:
        calls: list[str] = []
        for name in ("subscribe", "unsubscribe"):
            real = getattr(rooms.broker, name)

            async def spy(channel: str, real: Any = real, name: str = name) -> None:
                calls.append(f"{name} {channel}")
                await real(channel)

            setattr(rooms.broker, name, spy)
        (ws,) = await members(rooms, 1)
        async with rooms.subscribe("lobby") as one, rooms.subscribe("lobby") as two:
            assert calls == ["subscribe asgi_ws:lobby"]
            assert rooms.local_count("lobby") == 1 and [e.member for e in rooms.members("lobby")] != []
            assert len(rooms.members("lobby")) == 1  # subscriptions are not members: no presence
            assert await rooms.publish("lobby", "to all") == 3
            assert await ws.next_text(WAIT) == "to all"
            assert data(await take(one, 1)) == data(await take(two, 1)) == ["to all"]
        assert calls == ["subscribe asgi_ws:lobby"]  # the member still follows the room
        await close_all([ws])
        await until(lambda: calls[-1] == "unsubscribe asgi_ws:lobby", "the last one out unsubscribed")
        assert left_nothing(rooms) and await rooms.broker.subscription_count() == 1  # presence only


@pytest.mark.parametrize("url", ["memory://", HISTORY])
async def test_exclude_a_subscription_or_a_member(url: str) -> None:
    async with Rooms(url) as rooms:
        (ws,) = await members(rooms, 1)
        async with rooms.subscribe("lobby") as one, rooms.subscribe("lobby") as two:
            await rooms.publish("lobby", "not to one", exclude=one)
            await rooms.publish("lobby", "not to the member", exclude=connection_of(ws.scope))
            await rooms.publish_many(["lobby"], "marker")
            assert data(await take(one, 2)) == ["not to the member", "marker"]
            assert data(await take(two, 3)) == ["not to one", "not to the member", "marker"]
            assert [await ws.next_text(WAIT) for _ in range(2)] == ["not to one", "marker"]
        await close_all([ws])


async def test_authorize_is_asked_with_the_scope_given_and_only_then() -> None:
    asked: list[tuple[str, str, str]] = []

    def authorize(scope: Any, room: str, action: str) -> bool | str:
        asked.append((scope["path"], room, action))
        return "members only" if room == "secret" else True

    scope = ws_scope(path="/sse")
    async with Rooms(authorize=authorize) as rooms:
        with pytest.raises(PermissionDenied, match="members only"):
            async with rooms.subscribe("secret", scope=scope):
                raise AssertionError("entered a refused subscription")
        assert asked == [("/sse", "secret", "subscribe")] and left_nothing(rooms)
        async with rooms.subscribe("secret") as trusted:  # server code: not asked
            assert asked == [("/sse", "secret", "subscribe")]
            await rooms.publish("secret", "by the server", sender=trusted)  # no scope: not asked
            with pytest.raises(PermissionDenied):
                await rooms.publish("secret", "x", sender=rooms.subscribe("secret", scope=scope))
            assert data(await take(trusted, 1)) == ["by the server"]
        async with rooms.subscribe("lobby", scope=scope) as sub:
            await rooms.publish("lobby", "checked", sender=sub)
            assert data(await take(sub, 1)) == ["checked"]
        assert asked[1:] == [
            ("/sse", "secret", "publish"),
            ("/sse", "lobby", "subscribe"),
            ("/sse", "lobby", "publish"),
        ]
    assert left_nothing(rooms)


async def test_options_are_checked_when_subscribing() -> None:
    async with Rooms() as rooms:
        with pytest.raises(ConfigurationError, match="fan-out cannot wait"):
            rooms.subscribe("lobby", policy="block")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="conflate_key"):
            rooms.subscribe("lobby", policy="conflate")
        for bad in (0, -1, True, 1.5, "10"):
            with pytest.raises(ConfigurationError, match="max_messages"):
                rooms.subscribe("lobby", max_messages=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="fallback"):
            rooms.subscribe("lobby", policy="conflate", conflate_key=id, fallback="block")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="keeps history"):
            rooms.subscribe("lobby", after="1-1")  # memory:// without ?history=N
        for room in ("", "x" * 201, "\ud800"):
            with pytest.raises(ValueError, match="room names"):
                rooms.subscribe(room)
    async with Rooms(HISTORY) as rooms:
        with pytest.raises(ValueError, match="not a room position"):
            rooms.subscribe("lobby", after="latest")
        sub = rooms.subscribe("lobby")
        with pytest.raises(RuntimeError, match="enter the subscription first"):
            await anext(sub)
        async with sub:
            with pytest.raises(RuntimeError, match="entered once"):
                await sub.__aenter__()
        assert left_nothing(rooms)


# -- the buffer's policies: memory:// hands a publish over before publish() returns -------------


async def test_drop_oldest_keeps_the_newest_and_drop_newest_the_oldest() -> None:
    async with Rooms(HISTORY) as rooms:
        async with (
            rooms.subscribe("lobby", max_messages=3) as oldest_dropped,
            rooms.subscribe("lobby", max_messages=3, policy="drop_newest") as newest_dropped,
        ):
            for i in range(10):
                await rooms.publish("lobby", i)
            assert data(await take(oldest_dropped, 3)) == [7, 8, 9] and oldest_dropped.dropped == 7
            assert data(await take(newest_dropped, 3)) == [0, 1, 2] and newest_dropped.dropped == 7
            assert rooms.stats.dropped == 7  # refused offers: drop_newest's (drop_oldest took every message)
            await rooms.publish("lobby", "after")  # room again: both take the next one
            assert data(await take(oldest_dropped, 1)) == data(await take(newest_dropped, 1)) == ["after"]


async def test_conflate_keeps_the_newest_of_each_key_in_position_order() -> None:
    def key(message: RoomMessage) -> Any:
        return message.data.get("k") if isinstance(message.data, dict) else None

    async with Rooms(HISTORY) as rooms:
        subs = {
            fallback: rooms.subscribe("lobby", max_messages=3, policy="conflate", conflate_key=key, fallback=fallback)
            for fallback in ("drop_oldest", "drop_newest", "close")
        }
        for sub in subs.values():
            await sub.__aenter__()
        for value in [{"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "a", "v": 2}, "no key"]:
            await rooms.publish("lobby", value)
        for sub in subs.values():  # a's newer value went last, in position order; 3 buffered
            assert sub.conflated == 1 and sub.buffered == 3
        await rooms.publish("lobby", {"k": "b", "v": 2})  # a twin: replaced even though full
        await rooms.publish("lobby", {"k": "c", "v": 1})  # no twin, full: the fallback
        expected = {
            "drop_oldest": ["no key", {"k": "b", "v": 2}, {"k": "c", "v": 1}],  # a,2 was the oldest
            "drop_newest": [{"k": "a", "v": 2}, "no key", {"k": "b", "v": 2}],  # c,1 was refused
        }
        for fallback in ("drop_oldest", "drop_newest"):
            got = await take(subs[fallback], 3, fallback)
            assert data(got) == expected[fallback], fallback
            assert [position_key(m.position or "") for m in got] == sorted(position_key(m.position or "") for m in got)
        with pytest.raises(SubscriptionOverflow):
            await anext(subs["close"])
        for sub in subs.values():
            await sub.__aexit__(None, None, None)
        assert left_nothing(rooms)


async def test_a_conflate_key_that_raises_conflates_nothing_and_fails_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with Rooms() as rooms:
        async with rooms.subscribe("lobby", policy="conflate", conflate_key=lambda m: m.data["k"]) as sub:
            (ws,) = await members(rooms, 1)
            await rooms.publish("lobby", {"k": 1})
            await rooms.publish("lobby", "no k")  # the key raises TypeError: kept, not conflated
            await rooms.publish("lobby", {"k": 1})
            assert data(await take(sub, 2)) == ["no k", {"k": 1}]
            assert await ws.next_json(WAIT) == {"k": 1}  # the member got all three
            await close_all([ws])
    assert "conflate_key failed" in caplog.text


async def test_close_raises_overflow_and_a_new_subscription_resumes_from_its_position() -> None:
    async with Rooms(HISTORY) as rooms:
        async with rooms.subscribe("lobby", max_messages=5, policy="close") as sub:
            for i in range(3):
                await rooms.publish("lobby", i)
            assert data(await take(sub, 2)) == [0, 1]
            for i in range(3, 20):
                await rooms.publish("lobby", i)
            with pytest.raises(SubscriptionOverflow, match="fell 5 messages behind") as raised:
                await anext(sub)
            assert raised.value.position == sub.position and raised.value.room == "lobby"
            assert sub.buffered == 0 and sub.dropped >= 6
            with pytest.raises(SubscriptionOverflow):  # for good
                await anext(sub)
            await rooms.publish("lobby", 20)
            assert sub.buffered == 0
        async with rooms.subscribe("lobby", after=raised.value.position) as again:
            got = await take(again, 19)
            assert data(got) == list(range(2, 21)) and consecutive(got, after=raised.value.position)
        assert left_nothing(rooms)


def model(policy: str, size: int, steps: list[tuple[str, Any]]) -> tuple[list[Any], bool]:
    """What a subscription of ``policy`` hands out for ``steps`` (("publish", key) or ("take", None)),
    by the documented rules; and whether it overflowed (close)."""
    buffer: list[tuple[Any, int]] = []
    out: list[Any] = []
    closed = False
    for n, (step, key) in enumerate(steps):
        if closed:
            continue
        if step == "take":
            if buffer:
                out.append(buffer.pop(0)[1])
            continue
        twin = [i for i, (k, _) in enumerate(buffer) if policy == "conflate" and key is not None and k == key]
        if twin:
            del buffer[twin[0]]
        elif len(buffer) >= size:
            rule = "drop_oldest" if policy == "conflate" else policy
            if rule == "drop_newest":
                continue
            if rule == "close":
                closed = True
                continue
            buffer.pop(0)
        buffer.append((key, n))
    return out, closed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["drop_oldest", "drop_newest", "conflate", "close"]),
    size=st.integers(1, 4),
    steps=st.lists(
        st.one_of(st.tuples(st.just("publish"), st.sampled_from([None, "a", "b"])), st.just(("take", None))),
        max_size=30,
    ),
)
def test_every_policy_hands_out_what_its_rules_say(policy: str, size: int, steps: list[tuple[str, Any]]) -> None:
    async def drive() -> tuple[list[Any], bool]:
        async with Rooms() as rooms:
            sub = rooms.subscribe(
                "lobby",
                max_messages=size,
                policy=policy,  # type: ignore[arg-type]
                conflate_key=lambda m: m.data["k"],
            )
            async with sub:
                out: list[Any] = []
                for n, (step, key) in enumerate(steps):
                    if step == "publish":
                        await rooms.publish("lobby", {"k": key, "n": n})
                    elif sub.buffered or sub._failure is not None:  # (else a consumer would wait)
                        try:
                            out.append((await asyncio.wait_for(anext(sub), WAIT)).data["n"])
                        except SubscriptionOverflow:
                            return out, True
                return out, sub._failure is not None

    assert asyncio.run(drive()) == model(policy, size, steps)


# -- the end of a subscription ---------------------------------------------------------------------


async def test_the_iteration_ends_when_rooms_close_after_what_it_holds() -> None:
    rooms = Rooms()
    async with rooms.subscribe("lobby") as sub:
        got: list[Any] = []
        entered = asyncio.Event()

        async def read() -> None:
            entered.set()
            async for message in sub:
                got.append(message.data)

        reader = asyncio.create_task(read())
        await entered.wait()
        await rooms.publish("lobby", "last")
        await rooms.close()
        await asyncio.wait_for(reader, WAIT)  # the async for ended
        assert got == ["last"]
    with pytest.raises(ConfigurationError, match="closed"):
        async with rooms.subscribe("lobby"):
            pass


async def test_one_task_reads_a_subscription() -> None:
    async with Rooms() as rooms, rooms.subscribe("lobby") as sub:
        first = asyncio.create_task(anext(sub))
        await asyncio.sleep(0)  # (it waits for a message)
        with pytest.raises(RuntimeError, match="another task"):
            await anext(sub)
        await rooms.publish("lobby", 1)
        assert (await asyncio.wait_for(first, WAIT)).data == 1


# -- cancellation: nothing is left behind, wherever it lands --------------------------------------


class Gate:
    """Make a broker method wait until opened; ``entered`` is set when a call waits."""

    def __init__(self, rooms: Rooms, name: str) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        real = getattr(rooms.broker, name)

        async def gated(*args: Any) -> Any:
            self.entered.set()
            await self.open.wait()
            return await real(*args)

        setattr(rooms.broker, name, gated)


async def cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)


async def enter_and_wait(rooms: Rooms, **options: Any) -> None:
    async with rooms.subscribe("lobby", **options) as sub:
        await anext(sub)


async def test_a_cancelled_reader_leaves_nothing_behind() -> None:
    async with Rooms(HISTORY) as rooms:
        got = asyncio.Event()

        async def read() -> None:
            async with rooms.subscribe("lobby") as sub:
                async for _ in sub:
                    got.set()

        reader = asyncio.create_task(read())
        await until(lambda: "lobby" in rooms._rooms and rooms._rooms["lobby"].subscribed, "subscribed")
        await rooms.publish("lobby", "x")
        await asyncio.wait_for(got.wait(), WAIT)
        await cancelled(reader)
        assert left_nothing(rooms) and await rooms.broker.subscription_count() == 1


@pytest.mark.parametrize("where", ["subscribe", "last_position", "history"])
async def test_cancelled_while_entering_leaves_nothing_behind(where: str) -> None:
    async with Rooms(HISTORY) as rooms:
        await rooms.publish("lobby", "kept")
        gate = Gate(rooms, where)
        after = "0-0" if where == "history" else None
        entering = asyncio.create_task(enter_and_wait(rooms, after=after))
        await asyncio.wait_for(gate.entered.wait(), WAIT)
        await cancelled(entering)
        gate.open.set()
        await until(lambda: left_nothing(rooms), "the room state left")
        assert await rooms.broker.subscription_count() == 1


async def test_cancelled_again_while_leaving_the_broker_is_still_unsubscribed() -> None:
    async with Rooms(HISTORY) as rooms:
        ready = asyncio.Event()

        async def follow() -> None:
            async with rooms.subscribe("lobby"):
                ready.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(follow())
        await asyncio.wait_for(ready.wait(), WAIT)
        gate = Gate(rooms, "unsubscribe")
        task.cancel()
        await asyncio.wait_for(gate.entered.wait(), WAIT)  # leaving: the unsubscribe waits
        await cancelled(task)  # a second cancellation ends the task
        gate.open.set()
        await until(lambda: left_nothing(rooms), "the unsubscribe went on")
        assert await rooms.broker.subscription_count() == 1


# -- many at once ----------------------------------------------------------------------------------


async def test_concurrent_subscriptions_share_one_subscription_and_each_get_every_message() -> None:
    async with Rooms(HISTORY) as rooms:
        subscribed: list[str] = []
        real = rooms.broker.subscribe

        async def spy(channel: str) -> None:
            subscribed.append(channel)
            await asyncio.sleep(0)  # concurrent entries overlap here
            await real(channel)

        rooms.broker.subscribe = spy  # type: ignore[method-assign]
        subs = [rooms.subscribe("lobby") for _ in range(50)]
        await asyncio.gather(*(sub.__aenter__() for sub in subs))
        assert subscribed == ["asgi_ws:lobby"]
        for i in range(100):
            await rooms.publish("lobby", i)
        for sub in subs:
            got = await take(sub, 100)
            assert data(got) == list(range(100)) and consecutive(got)
        await asyncio.gather(*(sub.__aexit__(None, None, None) for sub in subs))
        assert left_nothing(rooms)


async def test_subscriptions_coming_and_going_while_publishing_each_see_an_unbroken_run() -> None:
    async with Rooms(HISTORY) as rooms:
        runs: list[list[RoomMessage]] = []
        stop = asyncio.Event()

        async def one(lifetime: int) -> None:
            async with rooms.subscribe("lobby") as sub:
                runs.append(await take(sub, lifetime, "a short-lived subscription"))

        async def publisher() -> None:
            n = 0
            while not stop.is_set():
                await rooms.publish("lobby", n)
                n += 1
                await asyncio.sleep(0)

        publishing = asyncio.create_task(publisher())
        await asyncio.gather(*(one(5 + i % 7) for i in range(40)))
        stop.set()
        await asyncio.wait_for(publishing, WAIT)
        assert len(runs) == 40 and all(consecutive(run) for run in runs)
        await until(lambda: left_nothing(rooms), "every room state left")


# -- history: after= ------------------------------------------------------------------------------


async def published(rooms: Rooms, values: range) -> list[str]:
    positions = []
    for value in values:
        await rooms.publish("lobby", value)
        positions.append(await rooms.broker.last_position("asgi_ws:lobby"))
    return positions


SEAMS = ["published during the read", "published before the read", "delivered after the answer", "history lags"]


@pytest.mark.parametrize("seam", SEAMS)
async def test_after_replays_then_goes_on_live_with_nothing_missed_or_twice_at_the_seam(seam: str) -> None:
    """Live messages arrive while the history is read: after it (the replay lacks them), before
    it (the replay holds them too: dropped from the live ones), after the history's answer
    although the replay holds them (the broker's delivery lags: dropped as they come), or the
    history the broker answers lags behind what it delivered (read again from the replay's end)."""
    async with Rooms(HISTORY) as rooms:
        positions = await published(rooms, range(20))
        real = rooms.broker.history
        reads: list[str] = []
        deliver = rooms.broker._deliver
        late: list[tuple[Any, ...]] = []

        async def history(channel: str, after: str) -> Any:
            reads.append(after)
            if len(reads) == 1 and seam == "published before the read":
                for i in range(20, 25):
                    await rooms.publish("lobby", i)
            if len(reads) == 1 and seam == "delivered after the answer":
                rooms.broker._deliver = lambda *args: late.append(args)  # type: ignore[assignment]
                for i in range(20, 25):
                    await rooms.publish("lobby", i)
                rooms.broker._deliver = deliver
            entries = await real(channel, after)
            if len(reads) == 1 and seam == "published during the read":
                for i in range(20, 25):
                    await rooms.publish("lobby", i)
            if len(reads) == 1 and seam == "history lags":
                for i in range(20, 25):
                    await rooms.publish("lobby", i)
                entries = entries[:-7]  # it misses 17..24 of what was delivered live
            return entries

        rooms.broker.history = history  # type: ignore[method-assign]
        async with rooms.subscribe("lobby", after=positions[4]) as sub:
            for args in late:
                assert deliver is not None
                deliver(*args)
            await rooms.publish("lobby", 25)
            got = await take(sub, 21)
            assert data(got) == list(range(5, 26)) and consecutive(got, after=positions[4])
            assert sub.buffered == 0
        assert reads[0] == positions[4] and len(reads) == (2 if seam == "history lags" else 1)


async def test_after_is_served_from_the_process_memory_when_it_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Rooms(HISTORY, recent=100) as rooms, rooms.subscribe("lobby") as first:
        positions = await published(rooms, range(10))
        await take(first, 10)
        asked = refuse_history(rooms, monkeypatch)
        async with rooms.subscribe("lobby", after=positions[2]) as second:
            got = await take(second, 7)
            assert data(got) == list(range(3, 10)) and consecutive(got, after=positions[2])
        assert asked == []


async def test_after_too_old_raises_history_gap_and_leaves_nothing() -> None:
    async with Rooms("memory://?history=3") as rooms:
        positions = await published(rooms, range(10))
        with pytest.raises(HistoryGap, match="no longer reaches back") as raised:
            async with rooms.subscribe("lobby", after=positions[0]):
                raise AssertionError("entered")
        assert raised.value.after == positions[0] and raised.value.room == "lobby"
        assert left_nothing(rooms)
        async with rooms.subscribe("lobby", after=positions[6]) as sub:  # still kept: 7, 8, 9
            assert data(await take(sub, 3)) == [7, 8, 9]


async def test_a_live_subscription_starts_at_a_position_after_which_it_misses_nothing() -> None:
    async with Rooms(HISTORY) as rooms:
        await published(rooms, range(3))
        async with rooms.subscribe("lobby") as live:
            assert live.position == await rooms.broker.last_position("asgi_ws:lobby")
            start = live.position
            await published(rooms, range(3, 6))
        assert start is not None
        async with rooms.subscribe("lobby", after=start) as again:
            assert data(await take(again, 3)) == [3, 4, 5]


# -- what is parsed ---------------------------------------------------------------------------------


@given(st.text(max_size=50) | st.from_regex(r"[0-9 +_-]{1,12}", fullmatch=True))
def test_positions_are_parsed_strictly(text: str) -> None:
    try:
        assert check_position(text) == text
    except ValueError:
        return
    parts = text.split("-")  # accepted: two runs of ASCII digits, nothing else
    assert len(parts) == 2 and all(p and p.isascii() and p.isdigit() and len(p) <= 20 for p in parts)
    assert position_key(text) == (int(parts[0]), int(parts[1]))


@given(st.integers(0, 10**20 - 1), st.integers(0, 10**20 - 1))
def test_every_position_a_broker_writes_is_accepted(epoch: int, number: int) -> None:
    assert check_position(f"{epoch}-{number}") == f"{epoch}-{number}"


def test_hostile_positions_are_refused() -> None:
    for text in (" 1-2", "1-2 ", "+1-2", "1_0-2", "-1-2", "1--2", "1-2\n", "\u0661-\u0662", "1", "", "1-" + "9" * 21):
        with pytest.raises(ValueError, match="not a room position"):
            check_position(text)
    with pytest.raises(ValueError):
        check_position(12)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
).filter(lambda v: not isinstance(v, str))  # a str is published as text
published_values = json_values | st.text() | st.binary()


def surrogate_free(value: Any) -> bool:
    with contextlib.suppress(ValueError):
        return bool(payload_of(value))  # (a Payload: a non-empty tuple)
    return False


@settings(max_examples=200)
@given(published_values.filter(surrogate_free))
def test_a_published_value_comes_back_as_it_was(value: Any) -> None:
    kind, body = payload_of(value)
    back = value_of(kind, body)
    assert back == value and type(back) is type(value)


@settings(max_examples=30, deadline=None)
@given(st.lists(published_values.filter(surrogate_free), min_size=1, max_size=5))
def test_published_values_reach_a_subscription_as_they_were(values: list[Any]) -> None:
    async def run() -> list[Any]:
        async with Rooms(HISTORY) as rooms, rooms.subscribe("lobby") as sub:
            for value in values:
                await rooms.publish("lobby", value)
            return data(await take(sub, len(values)))

    assert asyncio.run(run()) == values
