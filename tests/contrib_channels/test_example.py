"""examples/django_channels: its consumer (WebsocketCommunicator), and the project served by
``python -m examples.django_channels`` under uvicorn (real 401/403) and daphne (403)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import connect

from asgi_ws import AuthMiddleware, BackpressureMiddleware
from asgi_ws.contrib.channels import DjangoSessionBackend
from examples.django_channels.chat.consumers import rooms
from examples.django_channels.chat.routing import websocket_urlpatterns
from tests.contrib_channels.conftest import Example, example_server, log_in
from tests.contrib_channels.helpers import Frames
from tests.support.clients import opened, refusal

# The example's consumers behind the handshake and a session middleware, as in its asgi.py.
app = AuthMiddleware(BackpressureMiddleware(URLRouter(websocket_urlpatterns)), backend=DjangoSessionBackend())


async def received(comm: WebsocketCommunicator, wanted: Any, what: str) -> list[dict[str, Any]]:
    """Messages up to the first for which ``wanted(message)`` holds (at most 5 s)."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(5):
            while not seen or not wanted(seen[-1]):
                seen.append(json.loads(await comm.receive_from(timeout=5)))
    except TimeoutError:
        raise AssertionError(f"never received {what}; received {seen}") from None
    return seen


async def test_the_chat_consumer(make_user: Any, session_cookie: Any) -> None:
    users = {name: await make_user(name) for name in ("ann", "ben")}
    cookies = {name: await session_cookie(user) for name, user in users.items()}

    def communicator(name: str, room: str = "lobby") -> WebsocketCommunicator:
        headers = [(b"cookie", f"sessionid={cookies[name]}".encode())]
        return WebsocketCommunicator(app, f"/ws/chat/{room}/", headers=headers)

    ann, ben = communicator("ann"), communicator("ben")
    assert (await ann.connect(timeout=5))[0]
    welcome = (await received(ann, lambda m: m["type"] == "welcome", "ann's welcome"))[-1]
    assert welcome == {"type": "welcome", "user": "ann", "room": "lobby", "resumed": False, "members": ["ann"]}
    assert (await ben.connect(timeout=5))[0]
    await received(ann, lambda m: m.get("members") == ["ann", "ben"], "ben's arrival")
    # Presence names Django users by primary key (they have no asgi_ws identity).
    assert sorted(entry.user for entry in rooms.members("lobby")) == sorted(str(u.pk) for u in users.values())

    await ben.send_json_to({"type": "message", "text": "  hello ann  "})
    for comm in (ann, ben):
        message = (await received(comm, lambda m: m["type"] == "message", "ben's message"))[-1]
        assert (message["room"], message["user"], message["text"]) == ("lobby", "ben", "hello ann")
    await ann.send_json_to({"type": "shout"})
    assert (await received(ann, lambda m: m["type"] == "error", "an error reply"))[-1]["error"]

    # Django code reaches every page through the channel layer (the announcements group).
    await get_channel_layer().group_send("announcements", {"type": "announce", "user": "admin", "text": "tea"})
    announcement = {"type": "announcement", "user": "admin", "text": "tea"}
    for comm in (ann, ben):
        await received(comm, lambda m: m == announcement, "the announcement")

    await ben.disconnect()
    await received(ann, lambda m: m.get("members") == ["ann"], "ben's departure")
    await ann.disconnect()

    anonymous = WebsocketCommunicator(app, "/ws/chat/lobby/")
    connected, code = await anonymous.connect(timeout=5)
    assert not connected and code == 1008  # no denial extension here: a close before accept


async def welcome(ws: Any) -> dict[str, Any]:
    """The consumer's welcome; its own presence may come first (room_presence runs beside connect)."""
    while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "welcome":
        pass
    return message


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
async def test_the_example_project(server: str, example: Example) -> None:
    """Logged-in pages chat; the handshake refusals are real statuses under uvicorn, 403 under daphne."""
    alice, bob, carol = [await log_in(example, name) for name in ("alice", "bob", "carol")]
    with sqlite3.connect(example.db) as db:  # carol logged in, then her account was disabled
        db.execute("UPDATE auth_user SET is_active = 0 WHERE username = 'carol'")

    async def check(site: Example) -> None:
        url, origin = site.ws_url("/ws/chat/random/"), site.origin
        async with opened(url, origin=origin, additional_headers={"cookie": f"sessionid={alice}"}) as a:
            assert (await welcome(a))["user"] == "alice"
            async with opened(url, origin=origin, additional_headers={"cookie": f"sessionid={bob}"}) as b:
                assert (await welcome(b))["user"] == "bob"
                await b.send(json.dumps({"type": "message", "text": "hi alice"}))
                while (message := json.loads(await asyncio.wait_for(a.recv(), 10)))["type"] != "message":
                    pass
                assert (message["user"], message["text"]) == ("bob", "hi alice")

        denial = server == "uvicorn"  # daphne has no denial extension: every refusal is a 403
        for cookie, expected in [(None, (401, "authentication required")), (carol, (403, "inactive user"))]:
            headers = {"cookie": f"sessionid={cookie}"} if cookie else {}
            refused = await refusal(url, origin=origin, additional_headers=headers)
            assert (refused.status, refused.body) == (expected if denial else (403, "")), cookie
        refused = await refusal(url, origin="https://evil.example", additional_headers={"cookie": f"sessionid={alice}"})
        assert refused.status == 403

    try:
        if server == "uvicorn":
            await check(example)
        else:  # the same database: the sessions logged in above are valid there too
            with example_server(example.db, "daphne") as site:
                await check(site)
    finally:
        with sqlite3.connect(example.db) as db:
            db.execute("UPDATE auth_user SET is_active = 1 WHERE username = 'carol'")


async def csrf_post(example: Example, cookie: str, page: str, target: str, data: dict[str, str]) -> int:
    """POST a form of the example as a logged-in user (the CSRF token taken from ``page``)."""
    import re

    import httpx

    async with httpx.AsyncClient(base_url=example.origin, cookies={"sessionid": cookie}, timeout=10) as client:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', (await client.get(page)).text)
        assert token, f"no CSRF token on {page}"
        return (await client.post(target, data={**data, "csrfmiddlewaretoken": token[1]})).status_code


async def test_two_processes_on_redis(tmp_path: Any, redis_url: str) -> None:
    """docs/django.md's deployment: uvicorn and daphne processes sharing one Redis for the channel
    layer, the rooms and the sessions. Presence, room messages and group_send cross processes,
    and a page resumes on the other process, missing nothing."""
    room = f"r{uuid.uuid4().hex[:10]}"  # the machine's Redis is shared: a room of this test's own
    db = tmp_path / "db.sqlite3"
    with example_server(db, "uvicorn", redis_url) as one, example_server(db, "daphne", redis_url) as two:
        alice, bob = await log_in(one, "alice"), await log_in(one, "bob")
        path = f"/ws/chat/{room}/"
        a = await connect(one.ws_url(f"{path}?ws_resume=new"), origin=one.origin, additional_headers=cookie(alice))
        b = await connect(two.ws_url(path), origin=two.origin, additional_headers=cookie(bob))
        try:
            alice_reads, bob_reads = Frames(a), Frames(b)
            token = (await alice_reads.until(lambda m: m.get("$ws") == "session", "alice's session"))["token"]
            await alice_reads.until(lambda m: m.get("members") == ["alice", "bob"], "bob, on the other process")
            await bob_reads.until(lambda m: m.get("members") == ["alice", "bob"], "alice, on the other process")

            await b.send(json.dumps({"type": "message", "text": "hello from daphne"}))
            await alice_reads.until(lambda m: m.get("text") == "hello from daphne", "bob's message")
            status = await csrf_post(two, bob, f"/chat/{room}/", "/announce/", {"text": "layer works"})
            assert status == 204
            await alice_reads.until(lambda m: m.get("type") == "announcement", "the announcement (channel layer)")

            await a.close(1001)  # alice's page drops; bob speaks meanwhile
            await b.send(json.dumps({"type": "message", "text": "while you were away"}))
            await bob_reads.until(lambda m: m.get("text") == "while you were away", "bob's own message")
            resume = two.ws_url(f"{path}?ws_resume={quote(token)}&ws_seq={alice_reads.data}")
            again = await connect(resume, origin=two.origin, additional_headers=cookie(alice))
            try:  # on the other process: the session and the room's missed message come back
                reads = Frames(again)
                assert (await reads.next())["$ws"] == "resumed"
                await reads.until(lambda m: m.get("text") == "while you were away", "the missed message")
                welcome = await reads.until(lambda m: m.get("type") == "welcome", "the new welcome")
                assert welcome["resumed"] is True
            finally:
                await again.close()
        finally:
            await a.close()
            await b.close()


def cookie(value: str) -> dict[str, str]:
    return {"cookie": f"sessionid={value}"}
