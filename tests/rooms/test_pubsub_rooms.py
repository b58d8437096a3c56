"""What PubSubApp asks of Rooms: a publish encoded once (its size check and the broadcast share
it), presence watches that are memberships (they end with the connection, as rooms do)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asgi_ws import PubSubApp
from tests.support.session import Harness


async def test_a_client_publish_is_json_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"headline": "hi", "body": "x" * 200}
    encoded: list[Any] = []
    original = json.JSONEncoder.iterencode

    def counting(self: json.JSONEncoder, o: Any, _one_shot: bool = False) -> Any:
        if o == data:
            encoded.append(o)
        return original(self, o, _one_shot)

    monkeypatch.setattr(json.JSONEncoder, "iterencode", counting)
    app = PubSubApp()
    async with Harness(app) as publisher, Harness(app) as reader:
        reader.send_json({"$ws": "subscribe", "channel": "news"})
        await reader.next_json()
        publisher.send_json({"$ws": "publish", "channel": "news", "data": data, "id": 1})
        assert await publisher.next_json() == {"$ws": "published", "channel": "news", "id": 1}
        assert await reader.next_json() == {"channel": "news", "data": data}
    assert len(encoded) == 1
    await app.rooms.close()


async def test_the_size_limit_is_still_the_json_size_of_data() -> None:
    app = PubSubApp(max_publish_bytes=20)
    async with Harness(app) as ws:
        ws.send_json({"$ws": "publish", "channel": "c", "data": "x" * 18, "id": 1})  # 20 bytes as JSON: allowed
        assert await ws.next_json() == {"$ws": "published", "channel": "c", "id": 1}
        ws.send_json({"$ws": "publish", "channel": "c", "data": "x" * 19, "id": 2})  # 21 bytes
        assert (await ws.next_json())["code"] == "too_large"
        ws.send_json({"$ws": "publish", "channel": "c", "data": {"k": "é" * 7}, "id": 3})  # 22 bytes of UTF-8
        assert (await ws.next_json())["code"] == "too_large"
    await app.rooms.close()


async def test_a_presence_watch_ends_with_its_membership() -> None:
    app = PubSubApp()
    async with Harness(app) as watcher:
        watcher.send_json({"$ws": "subscribe", "channel": "room", "presence": True})
        await watcher.next_json()
        state = app.rooms._rooms["room"]
        assert len(state.watchers) == 1
        watcher.send_json({"$ws": "unsubscribe", "channel": "room"})
        assert (await watcher.next_json())["$ws"] == "unsubscribed"
        assert "room" not in app.rooms._rooms  # no member, no watcher, no subscription left
        watcher.send_json({"$ws": "subscribe", "channel": "room", "presence": True})
        await watcher.next_json()
    assert "room" not in app.rooms._rooms  # the connection ended: its watch with it
    await app.rooms.close()
