"""PubSubApp against a client probing what it may not see or do, on a real server.

Each test runs uvicorn with real ``websockets`` clients, keeps a bystander connected whose
deliveries must go on, and fails when the server logged an error or a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from asgi_ws import PubSubApp, Rooms
from asgi_ws.types import Scope
from tests.support.clients import recv_json_until
from tests.support.logs import no_server_errors
from tests.support.server import serve


def _admins_only(scope: Scope, channel: str, action: str) -> bool | str:
    """``admin:`` channels are for connections that said ``?role=admin`` (a stand-in for a real identity)."""
    return not channel.startswith("admin:") or scope.get("query_string") == b"role=admin" or "admins only"


async def _request(ws: ClientConnection, message: dict[str, Any]) -> Any:
    await ws.send(json.dumps(message))
    return await recv_json_until(ws, lambda m: m.get("$ws") != "presence_diff", what=f"the answer to {message}")


async def test_presence_of_a_channel_one_may_not_subscribe_to_is_refused() -> None:
    """Before: any client read the member list (ids, users, meta) of a channel ``authorize`` kept
    it out of, with one ``presence`` query (the handler asked ``authorize`` nothing)."""
    for rooms_level in (False, True):
        rooms = Rooms(authorize=_admins_only) if rooms_level else Rooms()
        app = PubSubApp(rooms, authorize=None if rooms_level else _admins_only)
        with no_server_errors(logging.WARNING):
            async with serve(app, log_config=None) as server:
                url = server.ws_url("/")
                async with connect(url + "?role=admin") as admin, connect(url) as mallory:
                    joined = await _request(admin, {"$ws": "subscribe", "channel": "admin:ops", "presence": True,
                                                    "meta": {"name": "alice", "phone": "555-0100"}})  # fmt: skip
                    assert joined["$ws"] == "subscribed"
                    for op in ("presence", "subscribe"):
                        refused = await _request(mallory, {"$ws": op, "channel": "admin:ops", "id": 1})
                        assert (refused["$ws"], refused["code"], refused["ref"]) == ("error", "forbidden", op), refused
                        assert "members" not in refused
                    # A channel it may enter: presence answers, without subscribing.
                    await _request(admin, {"$ws": "subscribe", "channel": "lobby", "meta": {"name": "alice"}})
                    listed = await _request(mallory, {"$ws": "presence", "channel": "lobby"})
                    assert [m["meta"] for m in listed["members"]] == [{"name": "alice"}]
                    # The subscriber sees its own channel's presence, and still gets what is published.
                    own = await _request(admin, {"$ws": "presence", "channel": "admin:ops"})
                    assert [m["meta"]["name"] for m in own["members"]] == ["alice"]
                    async with connect(url + "?role=admin") as publisher:
                        publish = {"$ws": "publish", "channel": "admin:ops", "data": "still here"}
                        await publisher.send(json.dumps(publish))
                        delivery = await recv_json_until(admin, lambda m: "channel" in m and "$ws" not in m,
                                                         what="the delivery to the subscriber")  # fmt: skip
                        assert delivery == {"channel": "admin:ops", "data": "still here"}
        await rooms.close()
