"""The recipes of docs/django.md and of docs/integrations.md's Django section, run as written.

Each block marked ``<!-- test: NAME -->`` in the doc is executed; the names a fragment takes
from the rest of a project (``websocket_urlpatterns``, ``django_asgi_app``...) are given.
The blocks of docs/django.md make a project together: ``chat.consumers`` and ``chat.routing``
are modules built from the doc, and the doc's ``asgi.py`` imports them.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.test import RequestFactory
from django.urls import path

from asgi_ws import BackpressureMiddleware
from asgi_ws.auth import SignedTicket
from asgi_ws.contrib.channels import issue_ticket, load_django_user
from asgi_ws.contrib.channels.views import asgi_ws_js
from tests.contrib_channels import helpers
from tests.contrib_channels.helpers import Frames
from tests.support.clients import opened, refusal
from tests.support.server import serve

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKED = re.compile(r"<!-- test: (\w+) -->\n```python\n(.*?)```", re.S)


def blocks(doc: str) -> dict[str, str]:
    found = dict(MARKED.findall((DOCS / doc).read_text()))
    assert found, f"no tested blocks in docs/{doc}"
    return found


DJANGO = blocks("django.md")


def run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "doc_block", **names}
    exec(compile(code, "<doc block>", "exec"), namespace)
    return namespace


def as_module(name: str, code: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, f"<docs/django.md: {name}>", "exec"), module.__dict__)
    return module


def test_every_marked_block_is_tested() -> None:
    assert set(DJANGO) == {
        "asgi",
        "authorize",
        "stack",
        "tickets",
        "consumers",
        "routing",
        "urls",
        "deployment",
        "lean",
    }
    assert set(blocks("integrations.md")) == {"integrations"}


async def test_the_project_of_the_guide(monkeypatch: pytest.MonkeyPatch, make_user: Any, session_cookie: Any) -> None:
    """consumers.py, routing.py and asgi.py of docs/django.md, served by uvicorn."""
    monkeypatch.setitem(sys.modules, "chat", types.ModuleType("chat"))
    as_module("chat.consumers", DJANGO["consumers"], monkeypatch)
    as_module("chat.routing", DJANGO["routing"], monkeypatch)
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")  # the doc's setdefault keeps it
    application = as_module("mysite.asgi", DJANGO["asgi"], monkeypatch).application

    alice, bob, carol = [await make_user(name) for name in ("alice", "bob", "carol")]
    cookies = {user.username: await session_cookie(user) for user in (alice, bob, carol)}
    carol.is_active = False
    await carol.asave()
    origin = "https://chat.example.com"

    def headers(name: str) -> dict[str, str]:
        return {"cookie": f"sessionid={cookies[name]}"}

    async with serve(application) as server:
        url = server.ws_url("/ws/chat/lobby/")
        async with opened(f"{url}?ws_resume=new", origin=origin, additional_headers=headers("alice")) as a:
            alice_frames = Frames(a)
            session = await alice_frames.next()  # the resumable session (control protocol)
            assert session["$ws"] == "session"
            assert await alice_frames.first("welcome") == {"type": "welcome", "resumed": False}
            async with opened(url, origin=origin, additional_headers=headers("bob")) as b:
                bob_frames = Frames(b)
                assert (await bob_frames.first("presence"))["members"] in (["alice"], ["alice", "bob"])
                await b.send(json.dumps({"text": "hi"}))
                assert await alice_frames.first("message") == {"type": "message", "user": "bob", "text": "hi"}
                await a.close(1001)  # gone for now: bob says something meanwhile
                await b.send(json.dumps({"text": "missed it?"}))
                assert (await bob_frames.first("message"))["text"] == "hi"
                assert (await bob_frames.first("message"))["text"] == "missed it?"
            resume = f"{url}?ws_resume={quote(session['token'])}&ws_seq={alice_frames.data}"
            async with opened(resume, origin=origin, additional_headers=headers("alice")) as again:
                frames = Frames(again)
                resumed = await frames.next()
                assert resumed["$ws"] == "resumed"
                assert await frames.first("message") == {"type": "message", "user": "bob", "text": "missed it?"}
                assert await frames.first("welcome") == {"type": "welcome", "resumed": True}
                # The session is bound to alice (her primary key): bob cannot take it over.
                stolen = f"{url}?ws_resume={quote(resumed['token'])}&ws_seq=0"
                async with opened(stolen, origin=origin, additional_headers=headers("bob")) as thief:
                    refused = await Frames(thief).next()
                    assert (refused["$ws"], refused["code"]) == ("resume_failed", "identity_mismatch")

        for name, expected in [(None, (401, "authentication required")), ("carol", (403, "inactive user"))]:
            refused = await refusal(url, origin=origin, additional_headers=headers(name) if name else {})
            assert (refused.status, refused.body) == expected
        refused = await refusal(url, origin="https://evil.example", additional_headers=headers("alice"))
        assert refused.status == 403


async def test_authorize_in_a_thread(make_user: Any, session_cookie: Any) -> None:
    namespace = run(DJANGO["authorize"], URLRouter=URLRouter, websocket_urlpatterns=helpers.websocket_urlpatterns)
    root, alice = await make_user("root", is_staff=True), await make_user("alice")
    root.is_superuser = True
    await root.asave()
    async with serve(namespace["websocket"]) as server:
        url = server.ws_url("/ws/")
        assert (await helpers.report(url, await session_cookie(root)))["user"] == "root"
        cookie = {"cookie": f"sessionid={await session_cookie(alice)}"}
        refused = await refusal(url, origin=helpers.ORIGIN, additional_headers=cookie)
        assert (refused.status, refused.body) == (403, "forbidden")


async def test_the_one_line_stack(make_user: Any, session_cookie: Any) -> None:
    names = {"ProtocolTypeRouter": ProtocolTypeRouter, "URLRouter": URLRouter, "django_asgi_app": None}
    application = run(DJANGO["stack"], websocket_urlpatterns=helpers.websocket_urlpatterns, **names)["application"]
    alice = await make_user("alice")
    async with serve(application) as server:
        url, own = server.ws_url("/ws/"), f"http://{server.host}:{server.port}"
        assert (await helpers.report(url, await session_cookie(alice), origin=own))["user"] == "alice"
        assert (await refusal(url, origin=own)).status == 401
        assert (await refusal(url, origin="https://evil.example")).status == 403


async def test_tickets_from_a_django_view(make_user: Any) -> None:
    names = {"settings": settings, "path": path, "URLRouter": URLRouter}
    namespace = run(DJANGO["tickets"], websocket_urlpatterns=helpers.websocket_urlpatterns, **names)
    alice = await make_user("alice")
    request = RequestFactory().get("/ws-ticket/")
    request.user = alice
    ticket = json.loads(namespace["urlpatterns"][0].callback(request).content)["ticket"]
    async with serve(BackpressureMiddleware(namespace["websocket"])) as server:
        seen = await helpers.report(server.ws_url(f"/ws/?ticket={ticket}"))
        assert (seen["user"], seen["django_user"], seen["backend"]) == ("alice", True, "ticket")
        refused = await refusal(server.ws_url("/ws/?ticket=forged"), origin=helpers.ORIGIN)
        assert (refused.status, refused.body) == (401, "invalid ticket")


async def test_the_lean_consumer() -> None:
    """The lean consumer of the guide, on BrokerChannelLayer: group messages reach its handler."""
    from channels.layers import channel_layers
    from channels.testing import WebsocketCommunicator

    from asgi_ws.contrib.channels import BrokerChannelLayer, LeanDispatchMixin

    consumer = run(DJANGO["lean"])["NotificationsConsumer"]
    assert issubclass(consumer, LeanDispatchMixin)
    layer = BrokerChannelLayer(prefix="docs-lean")
    old = channel_layers.set("default", layer)
    try:
        communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/notifications/")
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        await layer.group_send("notifications", {"type": "notify", "text": "deployed"})
        try:
            assert await communicator.receive_json_from(timeout=10) == {"text": "deployed"}
        except TimeoutError:
            raise AssertionError("the group message never reached the lean consumer's handler") from None
        await communicator.disconnect()
    finally:
        await layer.close()
        if old is None:  # set() would store None, returned to every later test
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", old)


def test_the_client_is_served_by_a_view() -> None:
    urlpatterns = run(DJANGO["urls"], path=path)["urlpatterns"]
    assert urlpatterns[0].callback is asgi_ws_js


def test_the_deployment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.utils.module_loading import import_string

    from asgi_ws import ResumeMiddleware, Rooms

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    names = {"os": __import__("os"), "Rooms": Rooms, "ResumeMiddleware": ResumeMiddleware, "settings": settings}
    namespace = run(DJANGO["deployment"], websocket=helpers.ROUTER, **names)
    config = namespace["CHANNEL_LAYERS"]["default"]
    layer = import_string(config["BACKEND"])(**config["CONFIG"])  # what Channels does with it
    assert type(layer).__name__ == "BrokerChannelLayer"
    assert namespace["rooms"].history  # the rooms' broker keeps history: resumed pages get what they missed
    assert namespace["websocket"].rooms is namespace["rooms"]


async def test_the_integrations_recipe(make_user: Any, session_cookie: Any) -> None:
    tickets = SignedTicket(["integrations-doc-key-0123456789"], load_user=load_django_user)
    names = {"django_asgi_app": None, "tickets": tickets, "websocket_urlpatterns": helpers.websocket_urlpatterns}
    application = run(blocks("integrations.md")["integrations"], **names)["application"]
    alice = await make_user("alice")
    async with serve(application) as server:
        url = server.ws_url("/ws/")
        seen = await helpers.report(url, await session_cookie(alice), subprotocols=["chat.v2"])
        assert (seen["user"], seen["django_user"], seen["subprotocol"]) == ("alice", True, "chat.v2")
        seen = await helpers.report(f"{url}?ticket={issue_ticket(tickets, alice)}", subprotocols=["chat.v2"])
        assert (seen["user"], seen["backend"]) == ("alice", "ticket")
        refused = await refusal(url, origin=helpers.ORIGIN, subprotocols=["chat.v2"])
        assert (refused.status, refused.body) == (401, "authentication required")
