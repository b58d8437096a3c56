"""Two real ``asgi-ws serve`` processes on one broker: one cluster."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.clients import opened
from tests.support.procs import asgi_ws_serve

ORIGIN = "https://app.example.com"


@pytest.mark.parametrize("kind", ["redis", "postgres", "nats"])
async def test_two_server_processes_share_rooms_and_presence(kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    namespace = f"mp{uuid.uuid4().hex[:8]}"
    args = ("--broker", url, "--namespace", namespace, "--allow-origin", ORIGIN)
    with asgi_ws_serve(*args) as one, asgi_ws_serve(*args) as two:
        kw = {"origin": ORIGIN, "ping_interval": None}
        async with opened(one.ws_url("/ws"), **kw) as alice, opened(two.ws_url("/ws"), **kw) as bob:
            await alice.send(json.dumps({"$ws": "subscribe", "channel": "lobby", "meta": {"name": "alice"}}))
            assert json.loads(await alice.recv())["$ws"] == "subscribed"
            await bob.send(
                json.dumps({"$ws": "subscribe", "channel": "lobby", "presence": True, "meta": {"name": "bob"}})
            )
            reply = json.loads(await bob.recv())
            names = {m["meta"]["name"] for m in reply["members"]}
            while names != {"alice", "bob"}:  # alice's join may reach process two just after
                diff = json.loads(await bob.recv())
                if diff.get("$ws") == "presence_diff" and "join" in diff:
                    names.add(diff["join"]["meta"]["name"])
            for attempt in range(50):  # process two's broker subscription lands asynchronously
                await alice.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": {"n": attempt}}))
                message = json.loads(await bob.recv())
                if message.get("channel") == "lobby":
                    assert message["data"]["n"] == attempt
                    break
            else:
                raise AssertionError("a publish on process one never reached process two")
            await bob.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": "to alice"}))
            while (message := json.loads(await alice.recv())).get("channel") != "lobby":
                pass
            assert message == {"channel": "lobby", "data": "to alice"}
