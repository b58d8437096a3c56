"""The Server-Sent Events example (examples/sse_app): a room as ``text/event-stream`` through a
real uvicorn, read by an httpx streaming client and by Chromium's EventSource; ``Last-Event-ID``
resumes from the room's history; a slow reader is ended and resumes with nothing lost; a
client gone leaves the room; two processes on one broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws import Rooms
from asgi_ws.brokers.base import position_key
from asgi_ws.rooms.subscription import follows
from examples.sse_app.main import after_of, make_app
from tests.browser.conftest import browser  # noqa: F401 (the real Chromium fixture)
from tests.rooms.test_subscribe import WAIT, left_nothing, take, until
from tests.rooms.test_subscribe_brokers import confirmed
from tests.support.logs import no_server_errors
from tests.support.procs import uvicorn_process
from tests.support.server import serve

Event = dict[str, str]


class Events:
    """The events of one ``text/event-stream`` response, parsed as EventSource does."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, what: str = "an event") -> Event | None:
        """The next event (its fields; comments skipped), None when the stream ended."""
        fields: Event = {}
        try:
            async with asyncio.timeout(WAIT):
                async for line in self.lines:
                    if not line:
                        if fields:
                            return fields
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except TimeoutError:
            raise AssertionError(f"{what}: nothing within {WAIT} s") from None
        return None

    async def take(self, count: int, what: str = "events") -> list[Event]:
        got = []
        for _ in range(count):
            event = await self.next(what)
            assert event is not None, f"{what}: the stream ended after {got}"
            got.append(event)
        return got


@contextlib.asynccontextmanager
async def stream(client: httpx.AsyncClient, url: str, **headers: str) -> AsyncIterator[Events]:
    """Open the room's stream; once its headers are in, the subscription is up."""
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


def values(events: list[Event]) -> list[Any]:
    return [json.loads(e["data"]) for e in events]


def unbroken(events: list[Event], after: str) -> bool:
    ids = [after, *(e["id"] for e in events)]
    return all(follows(p, q) for p, q in zip(ids[1:], ids, strict=False))


@contextlib.asynccontextmanager
async def sse_server(**options: Any) -> AsyncIterator[tuple[str, Rooms]]:
    app = make_app(**{"broker": "memory://?history=100", **options})
    with no_server_errors():
        async with serve(app, lifespan="on", log_config=None) as running:
            yield running.http_url(""), app.state.rooms


async def test_a_room_streams_as_events_and_last_event_id_resumes_it() -> None:
    async with sse_server() as (base, rooms), httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
        async with stream(client, "/rooms/lobby/events") as events:
            first = await events.next("the stream's start")
            assert first is not None and first["retry"] == "1000" and "data" not in first
            start = first["id"]  # the room's position: nothing yet
            assert (await client.post("/rooms/lobby/messages", json={"text": "hi"})).json() == {"delivered": 0}
            await rooms.publish("lobby", "plain text")  # any publish of the server
            await rooms.publish("lobby", b"\x00\x01")
            got = await events.take(3)
            assert values(got[:2]) == [{"text": "hi"}, "plain text"] and unbroken(got, start)
            assert got[2]["event"] == "binary" and base64.b64decode(got[2]["data"]) == b"\x00\x01"
        last = got[-1]["id"]
        for i in range(3):  # published while the client is away
            await rooms.publish("lobby", {"missed": i})
        async with stream(client, "/rooms/lobby/events", **{"Last-Event-ID": last}) as events:
            assert (await events.next("the resumed stream's start"))["id"] == last  # type: ignore[index]
            await rooms.publish("lobby", "live again")
            resumed = await events.take(4)
            assert values(resumed) == [{"missed": 0}, {"missed": 1}, {"missed": 2}, "live again"]
            assert unbroken(resumed, last)
        async with stream(client, f"/rooms/lobby/events?after={resumed[0]['id']}") as events:  # a reloaded page
            await events.next()
            assert values(await events.take(3)) == [{"missed": 1}, {"missed": 2}, "live again"]
        await until(lambda: left_nothing(rooms), "every stream left the room")


async def test_a_position_the_history_no_longer_holds_starts_with_a_gap_event() -> None:
    async with sse_server(broker="memory://?history=5") as (base, rooms):
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
            async with stream(client, "/rooms/lobby/events") as events:
                start = (await events.next())["id"]  # type: ignore[index]
            for i in range(10):
                await rooms.publish("lobby", i)
            async with stream(client, "/rooms/lobby/events", **{"Last-Event-ID": start}) as events:
                opening, gap = await events.take(2)
                assert gap["event"] == "gap" and json.loads(gap["data"]) == {"after": start}
                await rooms.publish("lobby", "live")
                live = (await events.take(1))[0]
                assert values([live]) == ["live"] and live["id"] != opening["id"]


async def test_refusals_are_statuses_and_log_no_error() -> None:
    def authorize(scope: Any, room: str, action: str) -> bool | str:
        return "staff only" if room.startswith("staff") else True

    async with sse_server(authorize=authorize) as (base, rooms):
        async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
            for url, headers, status in [
                ("/rooms/staff/events", {}, 403),
                ("/rooms/lobby/events", {"Last-Event-ID": "latest"}, 400),
                ("/rooms/lobby/events?after=1-2-3", {}, 400),
                (f"/rooms/{'x' * 201}/events", {}, 400),
            ]:
                response = await client.get(url, headers=headers)
                assert response.status_code == status, (url, response.text)
            assert (await client.post("/rooms/staff/messages", json=1)).status_code == 403
            assert (await client.post("/rooms/lobby/messages", content=b"{not json")).status_code == 400
            assert (await client.post("/rooms/lobby/messages", content=b"NaN")).status_code == 400
        assert left_nothing(rooms)


@given(st.text(max_size=30), st.text(max_size=30))
def test_where_a_client_resumes_is_a_position_or_refused(last_event_id: str, after: str) -> None:
    try:
        position = after_of(last_event_id, after)
    except ValueError:
        return
    assert position is None or position in (last_event_id, after)
    if position is not None:
        position_key(position)  # a position the history answers about


async def test_a_client_that_goes_away_leaves_the_room() -> None:
    async with sse_server() as (base, rooms), httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
        async with stream(client, "/rooms/lobby/events") as events:
            await events.next()
            assert rooms._rooms["lobby"].subs
        await until(lambda: left_nothing(rooms), "the stream's subscription left when its client went away")
        assert await rooms.broker.subscription_count() == 1


async def test_a_slow_reader_is_ended_and_resumes_with_nothing_lost() -> None:
    async with sse_server(max_buffered=10) as (base, rooms), httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
        async with stream(client, "/rooms/lobby/events") as events:
            start = (await events.next())["id"]  # type: ignore[index]
            for i in range(50):  # memory:// hands them over at once: the stream cannot keep up
                await rooms.publish("lobby", i)
            got: list[Event] = []
            while (event := await events.next("the slow stream")) is not None:
                got.append(event)
        assert len(got) < 50  # ended: the client reconnects with the last id it saw
        after = got[-1]["id"] if got else start
        async with stream(client, "/rooms/lobby/events", **{"Last-Event-ID": after}) as events:
            await events.next()
            rest = await events.take(50 - len(got))
        assert values(got + rest) == list(range(50)) and unbroken(got + rest, start)


@pytest.mark.parametrize("kind", ["redis", "amqp"])
async def test_two_processes_stream_each_others_publishes(kind: str, request: pytest.FixtureRequest) -> None:
    """The example in a uvicorn process, and this process, on one broker: a publish here reaches
    the process's stream, a POST there reaches a subscription here. Redis keeps history (ids)."""
    url = request.getfixturevalue(f"{kind}_url")
    broker = f"{url}?prefix=sse-{uuid.uuid4().hex[:8]}:&history=100" if kind == "redis" else url
    env = {"ASGI_WS_BROKER": broker}
    room = f"lobby-{uuid.uuid4().hex[:8]}"  # of its own: other runs may share the broker
    with uvicorn_process("examples.sse_app.main:app", env=env, extra=["--lifespan", "on"]) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with Rooms(broker, namespace="sse") as here, here.subscribe(room) as sub:
            await confirmed(here)
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as client:
                async with stream(client, f"/rooms/{room}/events") as events:
                    first = await events.next()
                    assert first is not None and ("id" in first) == (kind == "redis")
                    await here.publish(room, {"from": "here"})
                    assert values(await events.take(1)) == [{"from": "here"}]
                    assert (await client.post(f"/rooms/{room}/messages", json={"from": "there"})).status_code == 200
                    assert values(await events.take(1)) == [{"from": "there"}]
            assert [m.data for m in await take(sub, 2)] == [{"from": "here"}, {"from": "there"}]


async def test_chromium_eventsource_resumes_with_last_event_id(browser: Any) -> None:  # noqa: F811
    """Streams end after 3 events: Chromium reconnects by itself with Last-Event-ID (after the
    1 s ``retry``) and gets every message once, in order; a reloaded page resumes with ?after=."""
    async with sse_server(max_events=3) as (base, rooms):
        page = await browser.new_page()
        await page.goto(f"{base}/?room=lobby")
        await page.wait_for_function("document.getElementById('log').innerText.includes('open lobby')")
        for i in range(8):
            await rooms.publish("lobby", {"n": i})
        await page.wait_for_function("window.received.length >= 8", timeout=WAIT * 1000)
        received = await page.evaluate("window.received")
        assert [r["data"] for r in received] == [{"n": i} for i in range(8)]
        assert all(follows(b["id"], a["id"]) for a, b in itertools.pairwise(received))
        await page.evaluate("source.close()")
        for i in range(8, 10):
            await rooms.publish("lobby", {"n": i})
        await page.reload()  # follows the room again from the id it stored
        await page.wait_for_function("window.received.length >= 2", timeout=WAIT * 1000)
        assert [r["data"] for r in await page.evaluate("window.received")] == [{"n": 8}, {"n": 9}]
        await page.close()
