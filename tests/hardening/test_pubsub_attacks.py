"""PubSubApp against a client probing what it may not see or do, on a real server.

Each test runs uvicorn with real ``websockets`` clients, keeps a bystander connected whose
deliveries must go on, and fails when the server logged an error or a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from asgi_ws import PubSubApp, ResumeMiddleware, Rooms
from asgi_ws.types import Scope
from tests.support.clients import recv_json_until
from tests.support.logs import no_server_errors
from tests.support.server import serve


def _admins_only(scope: Scope, channel: str, action: str) -> bool | str:
    """``admin:`` channels are for connections that said ``?role=admin`` (a stand-in for a real identity)."""
    return not channel.startswith("admin:") or b"role=admin" in scope["query_string"].split(b"&") or "admins only"


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


async def _session(ws: ClientConnection) -> dict[str, Any]:
    return await recv_json_until(ws, lambda m: m.get("$ws") == "session", what="the session")  # type: ignore[no-any-return]


async def test_a_resume_does_not_restore_a_channel_pubsubs_authorize_now_refuses() -> None:
    """A session resumed by a connection that may no longer subscribe to one of its channels
    (its role was withdrawn: PubSubApp's ``authorize`` refuses it now) comes back without that
    channel: no room message filled in, no live delivery. Before: ResumeMiddleware rejoined every
    room asking only ``rooms.authorize``, so a demoted client got back into ``admin:`` channels
    by resuming, fill and live messages included."""
    rooms = Rooms("memory://?history=100")
    app = ResumeMiddleware(PubSubApp(rooms, authorize=_admins_only), secret_keys=["k" * 32], rooms=rooms, window=60)
    with no_server_errors(logging.WARNING):
        async with serve(app, log_config=None) as server:
            url = server.ws_url("/")
            async with connect(url + "?role=admin") as bystander, connect(url + "?role=admin") as publisher:
                await _request(bystander, {"$ws": "subscribe", "channel": "admin:ops"})
                mallory = await connect(url + "?role=admin&ws_resume=new")
                token = (await _session(mallory))["token"]
                for channel in ("admin:ops", "lobby"):
                    assert (await _request(mallory, {"$ws": "subscribe", "channel": channel}))["$ws"] == "subscribed"
                mallory.transport.abort()  # a drop: the session stays resumable
                await mallory.wait_closed()
                for channel, data in (("admin:ops", "secret while away"), ("lobby", "lobby while away")):
                    await publisher.send(json.dumps({"$ws": "publish", "channel": channel, "data": data}))
                await recv_json_until(bystander, lambda m: m.get("data") == "secret while away", what="the secret")
                async with connect(f"{url}?ws_resume={token}&ws_seq=0") as demoted:
                    resumed = await recv_json_until(demoted, lambda m: m.get("$ws") in ("resumed", "resume_failed"),
                                                    what="the resume answer")  # fmt: skip
                    assert resumed["$ws"] == "resumed" and resumed["rooms"] == ["lobby"], resumed
                    await publisher.send(json.dumps({"$ws": "publish", "channel": "admin:ops", "data": "live secret"}))
                    await publisher.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": "live lobby"}))
                    seen = []
                    async with asyncio.timeout(10):
                        while not seen or seen[-1].get("data") != "live lobby":
                            message = json.loads(await demoted.recv())
                            if "$ws" not in message:
                                seen.append(message)
                    assert [m["channel"] for m in seen] == ["lobby", "lobby"], seen
                    refused = await _request(demoted, {"$ws": "subscribe", "channel": "admin:ops"})
                    assert refused["code"] == "forbidden"
                # The channel's own subscriber was served throughout.
                await recv_json_until(bystander, lambda m: m.get("data") == "live secret", what="the live secret")
    await app.close()
    await rooms.close()
