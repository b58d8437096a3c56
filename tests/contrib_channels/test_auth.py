"""DjangoSessionBackend, tickets naming Django users, and Channels' session stacks in either order.

Under a real uvicorn (the denial extension: real 401/403) with real WebSocket clients; the
consumer reports what it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.sessions import SessionMiddlewareStack
from django.test import RequestFactory, override_settings

from asgi_ws import AuthMiddleware, OriginMiddleware
from asgi_ws.auth import SignedTicket
from asgi_ws.contrib.channels import DjangoAuthStack, DjangoSessionBackend, issue_ticket, load_django_user
from asgi_ws.contrib.channels.views import asgi_ws_js, ticket_view
from tests.contrib_channels.helpers import ORIGIN, ROUTER, WhoAmI, report
from tests.support.clients import opened, refusal
from tests.support.server import serve

tickets = SignedTicket(["contrib-channels-test-key-0123"], max_age=30, load_user=load_django_user)


def handshake(inner: Any, backend: Any, **options: Any) -> Any:
    return OriginMiddleware(AuthMiddleware(inner, backend=backend, **options), allow_origins=[ORIGIN])


#: Our handshake middlewares alone, and with Channels' session stacks outside and inside.
ORDERS: dict[str, Callable[[Any], Any]] = {
    "alone": lambda backend: handshake(ROUTER, backend),
    "SessionMiddlewareStack outside": lambda backend: SessionMiddlewareStack(handshake(ROUTER, backend)),
    "AuthMiddlewareStack outside": lambda backend: AuthMiddlewareStack(handshake(ROUTER, backend)),
    "SessionMiddlewareStack inside": lambda backend: handshake(SessionMiddlewareStack(ROUTER), backend),
    "AuthMiddlewareStack inside": lambda backend: handshake(AuthMiddlewareStack(ROUTER), backend),
}


@pytest.mark.parametrize("order", list(ORDERS))
async def test_session_backend_in_every_order(order: str, make_user: Any, session_cookie: Any) -> None:
    alice, carol = await make_user("alice"), await make_user("carol", is_active=False)
    alice_cookie, carol_cookie = await session_cookie(alice), await session_cookie(carol)
    app = ORDERS[order]([tickets, DjangoSessionBackend()])
    async with serve(app) as server:
        url = server.ws_url("/ws/")
        seen = await report(url, alice_cookie)
        assert seen == {
            "user": "alice",
            "django_user": True,
            "anonymous_class": None,
            "session_user": str(alice.pk),
            "backend": "django session",
            "subprotocol": None,
        }
        seen = await report(f"{url}?ticket={issue_ticket(tickets, alice)}")
        assert (seen["user"], seen["django_user"], seen["backend"]) == ("alice", True, "ticket")

        created = WhoAmI.created
        for cookie in (None, "not-a-session", carol_cookie):
            headers = {"cookie": f"sessionid={cookie}"} if cookie else {}
            refused = await refusal(url, origin=ORIGIN, additional_headers=headers)
            expected = (403, "inactive user") if cookie == carol_cookie else (401, "authentication required")
            assert (refused.status, refused.body) == expected, cookie
        refused = await refusal(f"{url}?ticket={issue_ticket(tickets, carol)}", origin=ORIGIN)
        assert (refused.status, refused.body) == (403, "inactive user")
        refused = await refusal(url, origin="https://evil.example", additional_headers={"cookie": alice_cookie})
        assert refused.status == 403
        assert WhoAmI.created == created  # refused before any consumer code ran


async def test_allow_anonymous_gives_djangos_anonymous_user(make_user: Any) -> None:
    async with serve(handshake(ROUTER, DjangoSessionBackend(allow_anonymous=True))) as server:
        seen = await report(server.ws_url("/ws/"))
    assert seen["user"] is None and seen["anonymous_class"] == "django.contrib.auth.models"
    assert seen["session_user"] is None  # an empty session is there, to log in with


async def test_authorize_sees_the_django_user(make_user: Any, session_cookie: Any) -> None:
    staff, alice = await make_user("sam", is_staff=True), await make_user("alice")

    def authorize(scope: Any, identity: Any) -> bool:
        assert scope["user"] is identity.user and scope["session"] is not None
        return bool(scope["user"].is_staff)

    async with serve(handshake(ROUTER, DjangoSessionBackend(), authorize=authorize)) as server:
        url = server.ws_url("/ws/")
        assert (await report(url, await session_cookie(staff)))["user"] == "sam"
        headers = {"cookie": f"sessionid={await session_cookie(alice)}"}
        refused = await refusal(url, origin=ORIGIN, additional_headers=headers)
        assert (refused.status, refused.body) == (403, "forbidden")


async def test_the_recipe_that_answered_500_now_refuses_cleanly(make_user: Any) -> None:
    """The old docs: AuthMiddlewareStack inside, scope["user"] read in authorize (KeyError: 'user')."""
    alice = await make_user("alice")
    app = handshake(
        AuthMiddlewareStack(ROUTER),
        tickets,
        allow_anonymous=True,
        authorize=lambda scope, identity: scope["user"].is_authenticated,
    )
    async with serve(app) as server:
        url = server.ws_url("/ws/")
        refused = await refusal(url, origin=ORIGIN, additional_headers={"cookie": "sessionid=whatever"})
        assert (refused.status, refused.body) == (403, "forbidden")
        assert (await report(f"{url}?ticket={issue_ticket(tickets, alice)}"))["user"] == "alice"


async def test_settings_are_respected(make_user: Any, session_cookie: Any) -> None:
    alice = await make_user("alice")
    engines = ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cache"]
    async with serve(handshake(ROUTER, DjangoSessionBackend())) as server:
        url = server.ws_url("/ws/")
        for engine in engines:
            with override_settings(SESSION_ENGINE=engine, SESSION_COOKIE_NAME="chat_session"):
                cookie = await session_cookie(alice)
                async with opened(url, origin=ORIGIN, additional_headers={"cookie": f"chat_session={cookie}"}) as conn:
                    assert '"user": "alice"' in await conn.recv()
                refused = await refusal(url, origin=ORIGIN, additional_headers={"cookie": f"sessionid={cookie}"})
                assert refused.status == 401, engine
    async with serve(handshake(ROUTER, DjangoSessionBackend(cookie_name="other"))) as server:
        cookie = await session_cookie(alice)
        async with opened(server.ws_url("/ws/"), origin=ORIGIN, additional_headers={"cookie": f"other={cookie}"}):
            pass


async def test_a_session_whose_password_changed_is_refused(make_user: Any, session_cookie: Any) -> None:
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    alice.set_password("a new one")
    await sync_to_async(alice.save)()
    async with serve(handshake(ROUTER, DjangoSessionBackend())) as server:
        headers = {"cookie": f"sessionid={cookie}"}
        refused = await refusal(server.ws_url("/ws/"), origin=ORIGIN, additional_headers=headers)
    assert refused.status == 401


async def test_django_auth_stack(make_user: Any, session_cookie: Any) -> None:
    alice = await make_user("alice")
    async with serve(DjangoAuthStack(ROUTER, tickets=tickets)) as server:
        url = server.ws_url("/ws/")
        host = f"http://{server.host}:{server.port}"
        cookie = await session_cookie(alice)
        assert (await report(url, cookie, origin=host))["backend"] == "django session"
        assert (await report(f"{url}?ticket={issue_ticket(tickets, alice)}", origin=host))["backend"] == "ticket"
        assert (await refusal(url, origin=host)).status == 401
        assert (await refusal(url, origin=ORIGIN, additional_headers={"cookie": f"sessionid={cookie}"})).status == 403


async def test_tickets_map_to_django_users(make_user: Any) -> None:
    alice = await make_user("alice")
    identity = await tickets.verify(issue_ticket(tickets, alice, scopes=["chat"]))
    assert identity.user == alice and identity.scopes == ("chat",)
    gone = await make_user("gone")
    ticket = issue_ticket(tickets, gone)
    await sync_to_async(gone.delete)()
    with pytest.raises(Exception, match="unknown user"):
        await tickets.verify(ticket)
    assert await load_django_user("not a number") is None
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ValueError):
        issue_ticket(tickets, AnonymousUser())


async def test_ticket_view(make_user: Any) -> None:
    import json

    from django.contrib.auth.models import AnonymousUser

    alice = await make_user("alice")
    view = ticket_view(tickets, scopes=["chat"])
    request = RequestFactory().get("/ws-ticket")
    request.user = alice
    response = view(request)
    body = json.loads(response.content)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert body["max_age"] == 30 and body["ticket"]
    request = RequestFactory().get("/ws-ticket")
    request.user = AnonymousUser()
    assert view(request).status_code == 401
    assert view(RequestFactory().delete("/ws-ticket")).status_code == 405

    js = asgi_ws_js(RequestFactory().get("/asgi-ws.js"))
    assert js["Content-Type"].startswith("text/javascript") and b"globalThis.AsgiWs = AsgiWs" in js.content
