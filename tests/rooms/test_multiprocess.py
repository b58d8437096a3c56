"""Two real ``asgi-ws serve`` processes on one broker: one cluster."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.clients import opened, recv_json_until
from tests.support.procs import asgi_ws_serve

ORIGIN = "https://app.example.com"


@pytest.mark.parametrize("kind", ["redis", "postgres", "nats", "amqp"])
async def test_two_server_processes_share_rooms_and_presence(kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    namespace = f"mp{uuid.uuid4().hex[:8]}"
    args = ("--broker", url, "--namespace", namespace, "--allow-origin", ORIGIN)
    with asgi_ws_serve(*args) as one, asgi_ws_serve(*args) as two:
        kw = {"origin": ORIGIN, "ping_interval": None}
        async with opened(one.ws_url("/ws"), **kw) as alice, opened(two.ws_url("/ws"), **kw) as bob:
            await alice.send(json.dumps({"$ws": "subscribe", "channel": "lobby", "meta": {"name": "alice"}}))
            await recv_json_until(alice, lambda m: m.get("$ws") == "subscribed", what="alice's subscribed")
            await bob.send(
                json.dumps({"$ws": "subscribe", "channel": "lobby", "presence": True, "meta": {"name": "bob"}})
            )
            reply = await recv_json_until(bob, lambda m: m.get("$ws") == "subscribed", what="bob's subscribed")
            names = {m["meta"]["name"] for m in reply["members"]}
            if "alice" not in names:  # alice's join may reach process two after bob's subscribe (a beat: 5 s)
                await recv_json_until(
                    bob,
                    lambda m: m.get("$ws") == "presence_diff" and m.get("join", {}).get("meta") == {"name": "alice"},
                    timeout=20,
                    what="alice's join, on process two",
                )
            # Process two's broker subscription lands asynchronously: publish until one arrives,
            # each attempt bounded (a publish before the subscription is lost, as pub/sub does).
            for attempt in range(40):
                await alice.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": {"n": attempt}}))
                try:
                    message = await recv_json_until(
                        bob, lambda m: m.get("channel") == "lobby", timeout=0.5, what="a publish from process one"
                    )
                except AssertionError:
                    continue
                assert message["data"]["n"] <= attempt
                break
            else:
                raise AssertionError("a publish on process one never reached process two in 40 attempts")
            await bob.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": "to alice"}))
            message = await recv_json_until(
                alice, lambda m: m.get("channel") == "lobby", what="bob's publish, on process one"
            )
            assert message == {"channel": "lobby", "data": "to alice"}
