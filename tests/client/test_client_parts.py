"""The client's parts alone: inbox, requests, events, the control table, options, the URL list."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_ws.client import Backoff, ClientClosed, Event, RequestInterrupted, RequestRefused, connect
from asgi_ws.client.dispatch import HANDLERS, dispatch
from asgi_ws.client.events import Emitter
from asgi_ws.client.inbox import Inbox
from asgi_ws.client.options import Settings, Urls
from asgi_ws.client.requests import Requests
from asgi_ws.exceptions import ConfigurationError
from tests.client.apps import closing_with, echo
from tests.support.procs import free_port
from tests.support.server import serve


async def test_inbox_pushes_back_when_full_and_hands_out_what_it_held_before_its_end() -> None:
    inbox = Inbox(2)
    await inbox.put("a")
    await inbox.put(b"b")
    third = asyncio.create_task(inbox.put("c"))
    await asyncio.sleep(0)
    assert not third.done() and len(inbox) == 2  # the reader stops reading the socket
    assert await inbox.get() == "a"
    await asyncio.wait_for(third, 1)
    inbox.end(ClientClosed(1000, "done"))
    assert [await inbox.get(), await inbox.get()] == [b"b", "c"]
    with pytest.raises(ClientClosed):
        await inbox.get()


async def test_requests_match_answers_and_refusals_in_order_and_end_with_the_connection() -> None:
    requests = Requests()
    first, second = requests.wait_for("subscribe", "a"), requests.wait_for("subscribe", "b")
    requests.sent("subscribe", "a")
    requests.sent("subscribe", "b")
    assert requests.refused("subscribe", "forbidden", "no") == "a"  # errors name the op: the oldest failed
    requests.answered("subscribe", "b", {"$ws": "subscribed", "channel": "b"})
    with pytest.raises(RequestRefused):
        await first
    assert (await second)["channel"] == "b"
    assert requests.refused("publish", "x", "y") is None and requests.refused(None, "x", "y") is None
    publish, unsubscribe = requests.wait_for("publish", 1), requests.wait_for("unsubscribe", "c")
    requests.sent("publish", 1)
    requests.connection_ended()
    with pytest.raises(RequestInterrupted):
        await publish
    assert await unsubscribe == {"$ws": "unsubscribed", "channel": "c"}
    later = requests.wait_for("subscribe", "d")
    requests.fail_all(ClientClosed(1000))
    with pytest.raises(ClientClosed):
        await later


async def test_emitter_feeds_streams_and_the_callback_whose_errors_are_logged(caplog: Any) -> None:
    seen: list[Event] = []

    def callback(event: Event) -> None:
        seen.append(event)
        raise RuntimeError("the application's bug")

    emitter = Emitter(callback)
    stream = emitter.stream(10)
    with caplog.at_level(logging.ERROR, "asgi_ws.client"):
        emitter.emit("connected")
    emitter.emit("closed", code=1000)
    emitter.end()
    assert [e.kind async for e in stream] == ["connected", "closed"]
    assert [e.kind for e in seen] == ["connected", "closed"]
    assert "on_event callback failed" in caplog.text
    assert [e async for e in emitter.stream(10)] == []  # a stream asked for after the end is ended


async def test_control_messages_dispatch_through_the_table() -> None:
    assert set(HANDLERS) == {
        "ping", "pong", "welcome", "session", "resumed", "resume_failed", "error", "subscribed", "unsubscribed",
        "published", "batch",
    }  # fmt: skip
    sent: list[tuple[str, Any]] = []
    events = Emitter()
    stream = events.stream(10)

    async def control(op: str, fields: Any = None) -> None:
        sent.append((op, fields))

    link: Any = SimpleNamespace(control=control, client=SimpleNamespace(_events=events))
    await dispatch(link, {"$ws": "ping", "id": 3})
    await dispatch(link, {"$ws": "presence_diff", "channel": "c"})
    events.end()
    assert sent == [("pong", {"id": 3})]
    assert [(e.kind, e.detail) async for e in stream] == [("control", {"$ws": "presence_diff", "channel": "c"})]


def test_settings_take_the_clients_options_and_pass_the_rest_to_websockets() -> None:
    settings = Settings.of({"headers": {"Origin": "o"}, "max_size": 2**20, "ping_interval": None, "stop_codes": [4000]})
    assert settings.headers == (("Origin", "o"),)
    assert settings.websockets == {"max_size": 2**20, "ping_interval": None}
    assert settings.stop_codes == frozenset({4000}) and settings.backoff == Backoff() and not settings.can_refresh
    assert Settings.of({"ticket": lambda: "t"}).can_refresh
    with pytest.raises(TypeError, match="additional_headers"):
        Settings.of({"additional_headers": []})
    with pytest.raises(ValueError):
        Settings.of({"max_queue": 0})


async def test_urls_a_list_in_turn_or_a_callable() -> None:
    urls = Urls(["ws://a/", "ws://b/"])
    assert [await urls.next_attempt(), await urls.next_attempt()] == ["ws://a/", "ws://a/"]  # stays while it works
    urls.advance()
    assert await urls.next_attempt() == "ws://b/"
    urls.advance()
    assert await urls.next_attempt() == "ws://a/" and urls.describe() == "ws://a/, ws://b/"

    async def pick() -> str:
        return "ws://picked/?ticket=secret"

    picked = Urls(pick)
    assert await picked.next_attempt() == "ws://picked/?ticket=secret" and picked.describe() == "pick"
    for bad in ([], ["ws://a/", 3]):
        with pytest.raises(ConfigurationError):
            Urls(bad)  # type: ignore[arg-type]


async def test_a_url_list_moves_to_the_next_server_when_one_goes_away() -> None:
    events: list[Event] = []
    dead = f"ws://127.0.0.1:{free_port()}/"
    async with serve(closing_with(1012, "restarting")) as going, serve(echo) as staying:
        urls = [dead, going.ws_url(), staying.ws_url()]
        async with connect(urls, backoff=Backoff(base=0.01, cap=0.05), on_event=events.append) as client:
            assert (await client.recv()).startswith("ready")  # type: ignore[union-attr]
            assert client.current_url is not None and client.current_url.startswith(staying.ws_url())
    reasons = [e.code for e in events if e.kind == "reconnecting"]
    assert reasons == [None, 1012], reasons  # refused by the dead one, then the restart of the next
