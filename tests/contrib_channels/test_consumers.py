"""RoomsConsumerMixin in Channels consumers, driven by Channels' WebsocketCommunicator.

Rooms, presence and the resumed session reach the consumer through plain methods; nothing
of the control protocol is involved, and what the consumer sends itself is unchanged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from asgi_ws import BackpressureMiddleware, ConfigurationError, ResumeMiddleware, Rooms
from asgi_ws.contrib.channels import RoomsConsumerMixin
from asgi_ws.contrib.channels.consumers import _RELAYS

PREFIX = '{"$ws"'
rooms = Rooms()
left: list[frozenset[str]] = []


class JsonChat(RoomsConsumerMixin, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    rooms = rooms

    async def connect(self) -> None:
        self.name = parse_qs(self.scope["query_string"].decode())["name"][0]
        await self.accept()
        await self.join_room("lobby", meta={"name": self.name})
        await self.send_json({"hello": self.name, "resumed": self.resumed, "rooms": sorted(self.joined_rooms)})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content == "leave":
            await self.leave_room("lobby")
            await self.send_json({"rooms": sorted(self.joined_rooms)})
            return
        await self.publish("lobby", {"from": self.name, **content}, exclude_self=content.get("quiet", False))

    async def room_presence(self, event: Any) -> None:
        names = sorted(str(entry.meta.get("name")) for entry in self.room_members(event.entry.room))
        await self.send_json({"presence": event.kind, "who": event.entry.meta.get("name"), "members": names})

    async def disconnect(self, code: int) -> None:
        left.append(self.joined_rooms)


class TextChat(RoomsConsumerMixin, AsyncWebsocketConsumer):  # type: ignore[misc]
    rooms = rooms

    async def connect(self) -> None:
        await self.accept()
        await self.join_room("text")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.publish("text", text_data if text_data is not None else bytes_data)


class NoRooms(RoomsConsumerMixin, AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()
        with pytest.raises(ConfigurationError, match="rooms is not set"):
            await self.join_room("lobby")
        await self.send(text_data="refused as expected")


ROUTES = URLRouter(
    [path("json/", JsonChat.as_asgi()), path("text/", TextChat.as_asgi()), path("none/", NoRooms.as_asgi())]
)
app = BackpressureMiddleware(ROUTES)


class Client:
    """A communicator and what it received: data frames (decoded JSON) and control messages."""

    def __init__(self, application: Any, url: str) -> None:
        self.comm = WebsocketCommunicator(application, url)
        self.data: list[Any] = []
        self.controls: list[dict[str, Any]] = []

    async def connect(self) -> Client:
        connected, _ = await self.comm.connect(timeout=5)
        assert connected
        return self

    async def until(self, predicate: Any, what: str) -> None:
        """Read until ``predicate(self)`` holds, at most 5 s."""
        try:
            async with asyncio.timeout(5):
                while not predicate(self):
                    frame = await self.comm.receive_from(timeout=5)
                    if isinstance(frame, str) and frame.startswith(PREFIX):
                        self.controls.append(json.loads(frame))
                    else:
                        self.data.append(json.loads(frame) if isinstance(frame, str) else frame)
        except TimeoutError:
            raise AssertionError(f"never received {what}; received {self.data} {self.controls}") from None

    def members(self) -> list[str] | None:
        seen = [m["members"] for m in self.data if isinstance(m, dict) and "presence" in m]
        return seen[-1] if seen else None


async def test_rooms_and_presence_in_a_json_consumer() -> None:
    alice = await Client(app, "/json/?name=alice").connect()
    await alice.until(lambda c: c.members() == ["alice"], "alice's own join")
    bob = await Client(app, "/json/?name=bob").connect()
    for client in (alice, bob):
        await client.until(lambda c: c.members() == ["alice", "bob"], "bob's join")
    # What the consumer sends itself is Channels' own encoding, untouched (its own presence
    # may come before it: room_presence runs beside connect).
    hello = json.dumps({"hello": "bob", "resumed": False, "rooms": ["lobby"]})
    await bob.until(lambda c: hello in [json.dumps(m) for m in c.data], "bob's hello")

    await alice.comm.send_json_to({"text": "hi"})
    for client in (alice, bob):
        await client.until(lambda c: {"from": "alice", "text": "hi"} in c.data, "alice's message")
    await bob.comm.send_json_to({"text": "psst", "quiet": True})
    await alice.until(lambda c: {"from": "bob", "text": "psst", "quiet": True} in c.data, "bob's quiet message")

    await bob.comm.disconnect(code=1001)
    await alice.until(lambda c: c.members() == ["alice"], "bob's leave")
    assert {"from": "bob", "text": "psst", "quiet": True} not in bob.data  # exclude_self
    await alice.comm.send_json_to("leave")
    await alice.until(lambda c: {"rooms": []} in c.data, "the room list after leaving")
    await alice.comm.disconnect()
    assert rooms.members("lobby") == [] and rooms.local_count("lobby") == 0
    assert frozenset() in left  # the mixin left the rooms before disconnect() ran
    assert not _RELAYS[rooms].watchers and not _RELAYS[rooms].by_room  # presence pumps stopped


async def test_rooms_in_a_text_consumer() -> None:
    one, two = await Client(app, "/text/").connect(), await Client(app, "/text/").connect()
    await asyncio.sleep(0)
    await one.comm.send_to(text_data='"plain text"')
    await two.comm.send_to(bytes_data=b"\x00binary")
    for client in (one, two):
        await client.until(lambda c: "plain text" in c.data and b"\x00binary" in c.data, "both messages")
    await one.comm.disconnect()
    await two.comm.disconnect()


async def test_a_consumer_without_rooms_is_told_so() -> None:
    client = await Client(app, "/none/").connect()
    assert await client.comm.receive_from(timeout=5) == "refused as expected"
    await client.comm.disconnect()


async def test_the_resumed_session_and_its_rooms() -> None:
    resume = ResumeMiddleware(ROUTES, secret_keys=["resume-key-0123456789abcdef"], rooms=rooms)
    resumable = BackpressureMiddleware(resume)
    first = await Client(resumable, "/json/?name=carol&ws_resume=new").connect()
    await first.until(lambda c: c.controls and c.members() == ["carol"], "the session and carol's join")
    hello = {"hello": "carol", "resumed": False, "rooms": ["lobby"]}
    await first.until(lambda c: hello in c.data, "carol's hello")
    token = next(c["token"] for c in first.controls if c["$ws"] == "session")
    await first.comm.disconnect(code=1001)  # gone, not closed for good: the session waits

    url = f"/json/?name=carol&ws_resume={quote(token)}&ws_seq={len(first.data)}"
    second = await Client(resumable, url).connect()
    await second.until(lambda c: any(m.get("hello") == "carol" for m in c.data if isinstance(m, dict)), "hello")
    assert [c["$ws"] for c in second.controls] == ["resumed"]
    # The room came back with the session, before accept() returned: joining it changed nothing.
    assert {"hello": "carol", "resumed": True, "rooms": ["lobby"]} in second.data
    await second.comm.send_json_to({"text": "back"})
    await second.until(lambda c: {"from": "carol", "text": "back"} in c.data, "carol's message in the restored room")
    await second.comm.disconnect()
