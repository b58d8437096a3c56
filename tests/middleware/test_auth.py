from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed

from asgi_ws import (
    AuthenticationFailed,
    AuthMiddleware,
    CloseCode,
    ConfigurationError,
    ConnectionClosed,
    CredentialsExpired,
    PermissionDenied,
    SubprotocolMiddleware,
)
from asgi_ws.auth import BearerToken, CookieToken, Identity, QueryToken, SignedTicket, SubprotocolToken, User
from asgi_ws.types import Scope
from tests.support.apps import Probe, echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.clients import opened, refusal
from tests.support.server import serve

KEY_OLD = "old-key-0123456789abcdef"
KEY_NEW = "new-key-0123456789abcdef"

USERS = {"tok-alice": "alice", "tok-bob": "bob"}


def lookup(token: str) -> str | None:
    return USERS.get(token)


async def async_lookup(token: str) -> Identity | None:
    user = USERS.get(token)
    return None if user is None else Identity(user=User(user), scopes=("chat",))


def issued_in_the_past(tickets: SignedTicket, seconds: float, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> str:
    """Issue a ticket whose signature timestamp lies ``seconds`` in the past."""
    real = time.time
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: real() - seconds)
        return tickets.issue("alice", **kwargs)


# -- backends ------------------------------------------------------------------------------


async def test_bearer_token_backend() -> None:
    backend = BearerToken(lookup)
    identity = await backend.authenticate(ws_scope(headers=[("authorization", "bearer tok-alice")]))
    assert identity is not None and identity.user == User("alice") and identity.backend == "bearer token"
    assert await backend.authenticate(ws_scope()) is None
    assert await backend.authenticate(ws_scope(headers=[("authorization", "Basic YWxhZGRpbg==")])) is None
    with pytest.raises(AuthenticationFailed, match="invalid bearer token") as info:
        await backend.authenticate(ws_scope(headers=[("authorization", "Bearer nope")]))
    assert info.value.status == 401 and ("www-authenticate", "Bearer") in info.value.headers
    with pytest.raises(AuthenticationFailed, match="empty bearer token"):
        await backend.authenticate(ws_scope(headers=[("authorization", "Bearer ")]))
    with pytest.raises(AuthenticationFailed, match="more than one"):
        await backend.authenticate(
            ws_scope(headers=[("authorization", "Bearer tok-alice"), ("authorization", "Bearer tok-bob")])
        )


async def test_query_and_cookie_backends_with_async_verify() -> None:
    identity = await QueryToken(async_lookup).authenticate(ws_scope(query="a=1&token=tok-bob"))
    assert identity is not None and identity.user == User("bob") and identity.scopes == ("chat",)
    assert await QueryToken(async_lookup).authenticate(ws_scope(query="a=1")) is None
    scope = ws_scope(headers=[("cookie", "theme=dark; session=tok-alice")])
    identity = await CookieToken(lookup).authenticate(scope)
    assert identity is not None and identity.user == User("alice")
    assert await CookieToken(lookup, cookie="other").authenticate(scope) is None


async def test_verify_may_refuse_with_its_own_reason() -> None:
    def verify(token: str) -> str:
        raise CredentialsExpired("token expired")

    with pytest.raises(CredentialsExpired, match="token expired") as info:
        await BearerToken(verify).authenticate(ws_scope(headers=[("authorization", "Bearer x")]))
    assert ("www-authenticate", "Bearer") in info.value.headers


def test_backend_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="verify must be a callable"):
        BearerToken("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="prefix"):
        SubprotocolToken(lookup, prefix="")
    with pytest.raises(ConfigurationError, match="at least one backend"):
        AuthMiddleware(echo_app(), backend=[])
    with pytest.raises(ConfigurationError, match="neither an auth backend"):
        AuthMiddleware(echo_app(), backend=42)  # type: ignore[arg-type]


# -- signed tickets --------------------------------------------------------------------------


async def test_ticket_round_trip_with_scopes_claims_and_expiry() -> None:
    tickets = SignedTicket([KEY_NEW])
    later = time.time() + 3600
    identity = await tickets.verify(tickets.issue("alice", scopes=["chat"], expires_at=later, claims={"room": 7}))
    assert identity.user == User("alice")
    assert identity.scopes == ("chat",)
    assert identity.expires_at == pytest.approx(later)
    assert identity.claims == {"room": 7}


async def test_ticket_older_than_max_age_is_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = SignedTicket([KEY_NEW], max_age=30)
    with pytest.raises(CredentialsExpired, match="ticket expired"):
        await tickets.verify(issued_in_the_past(tickets, 60, monkeypatch))
    assert (await tickets.verify(issued_in_the_past(tickets, 5, monkeypatch))).user == User("alice")


async def test_tampered_ticket_is_invalid() -> None:
    tickets = SignedTicket([KEY_NEW])
    ticket = tickets.issue("alice")
    payload, rest = ticket.split(".", 1)
    forged = SignedTicket(["attacker-key-0123456789"]).issue("admin")
    for bad in (payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + rest, ticket[:-2], "garbage", forged):
        with pytest.raises(AuthenticationFailed, match="invalid ticket"):
            await tickets.verify(bad)


async def test_key_rotation_signs_with_newest_and_accepts_listed_keys() -> None:
    before = SignedTicket([KEY_OLD])
    during = SignedTicket([KEY_OLD, KEY_NEW])
    after = SignedTicket([KEY_NEW])
    old_ticket = before.issue("alice")
    new_ticket = during.issue("bob")
    assert (await during.verify(old_ticket)).user == User("alice")  # old key still listed
    assert (await after.verify(new_ticket)).user == User("bob")  # signed with the newest key
    with pytest.raises(AuthenticationFailed, match="invalid ticket"):
        await after.verify(old_ticket)  # retired key
    with pytest.raises(AuthenticationFailed, match="invalid ticket"):
        await before.verify(new_ticket)


async def test_salt_keeps_other_signatures_out() -> None:
    other_purpose = SignedTicket([KEY_NEW], salt="password-reset").issue("alice")
    with pytest.raises(AuthenticationFailed):
        await SignedTicket([KEY_NEW]).verify(other_purpose)


async def test_connection_max_age_and_expires_at(monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = SignedTicket([KEY_NEW], connection_max_age=600)
    identity = await tickets.verify(tickets.issue("alice"))
    assert identity.expires_at == pytest.approx(time.time() + 600, abs=2)
    soon = time.time() + 10
    identity = await tickets.verify(tickets.issue("alice", expires_at=soon))
    assert identity.expires_at == soon  # the earlier of the two
    with pytest.raises(CredentialsExpired):
        await tickets.verify(tickets.issue("alice", expires_at=time.time() - 1))


async def test_load_user_may_refuse_a_vanished_user() -> None:
    async def load_user(user_id: str) -> User | None:
        return User(user_id, display_name="Alice") if user_id == "alice" else None

    tickets = SignedTicket([KEY_NEW], load_user=load_user)
    assert (await tickets.verify(tickets.issue("alice"))).user.display_name == "Alice"
    with pytest.raises(AuthenticationFailed, match="unknown user"):
        await tickets.verify(tickets.issue("mallory"))


@pytest.mark.parametrize(
    ("keys", "kwargs", "message"),
    [
        ([], {}, "at least one secret key"),
        (["short"], {}, "at least 16 bytes"),
        ([KEY_NEW], {"max_age": 0}, "max_age"),
        ([KEY_NEW], {"connection_max_age": -1}, "connection_max_age"),
    ],
)
def test_ticket_configuration_errors(keys: list[str], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SignedTicket(keys, **kwargs)


# -- the middleware, in memory ---------------------------------------------------------------


async def test_missing_credentials_get_401_with_a_challenge() -> None:
    mw = AuthMiddleware(echo_app(), backend=[QueryToken(lookup), BearerToken(lookup)])
    outcome, _ = await handshake(mw, ws_scope())
    assert (outcome.status, outcome.body) == (401, b"authentication required")
    assert outcome.headers["www-authenticate"] == "Bearer"


async def test_first_backend_with_credentials_decides() -> None:
    mw = AuthMiddleware(echo_app(), backend=[QueryToken(lookup), BearerToken(lookup)])
    outcome, comm = await handshake(mw, ws_scope(headers=[("authorization", "Bearer tok-bob")]))
    assert outcome.kind == "accepted"
    assert json.loads((await comm.receive_output(1))["text"])["user"] == "bob"
    outcome, _ = await handshake(mw, ws_scope(query="token=bad", headers=[("authorization", "Bearer tok-bob")]))
    assert (outcome.status, outcome.body) == (401, b"invalid query token")


async def test_identity_lands_in_the_scope() -> None:
    probe = Probe()
    mw = AuthMiddleware(echo_app(probe), backend=BearerToken(async_lookup))
    outcome, comm = await handshake(mw, ws_scope(headers=[("authorization", "Bearer tok-alice")]))
    assert outcome.kind == "accepted"
    scope = probe.scopes[0]
    assert scope["user"] == User("alice") and scope["user"].is_authenticated
    assert scope["auth"].scopes == ("chat",)
    assert scope["asgi_ws"]["identity"] is scope["auth"]


async def test_authorize_refuses_with_403() -> None:
    async def only_alice(scope: Scope, identity: Identity) -> bool:
        return bool(identity.user.identity == "alice")

    def raises(scope: Scope, identity: Identity) -> bool:
        raise PermissionDenied("banned from this room")

    mw = AuthMiddleware(echo_app(), backend=BearerToken(lookup), authorize=only_alice)
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer tok-bob")]))
    assert (outcome.status, outcome.body) == (403, b"forbidden")
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer tok-alice")]))
    assert outcome.kind == "accepted"
    mw = AuthMiddleware(echo_app(), backend=BearerToken(lookup), authorize=raises)
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer tok-alice")]))
    assert (outcome.status, outcome.body) == (403, b"banned from this room")


async def test_anonymous_allowed_but_bad_credentials_still_refused() -> None:
    mw = AuthMiddleware(echo_app(), backend=BearerToken(lookup), allow_anonymous=True)
    outcome, comm = await handshake(mw, ws_scope())
    assert outcome.kind == "accepted"
    assert json.loads((await comm.receive_output(1))["text"])["authenticated"] is False
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer forged")]))
    assert outcome.status == 401


async def test_callable_backend_sync_and_async() -> None:
    def from_header(scope: Scope) -> str | None:
        return "svc" if (b"x-service", b"yes") in scope["headers"] else None

    mw = AuthMiddleware(echo_app(), backend=from_header)
    outcome, comm = await handshake(mw, ws_scope(headers=[("x-service", "yes")]))
    assert json.loads((await comm.receive_output(1))["text"])["user"] == "svc"
    outcome, _ = await handshake(mw, ws_scope())
    assert outcome.status == 401


async def test_already_expired_credentials_are_refused_before_accept() -> None:
    def expired(token: str) -> Identity:
        return Identity(user=User("alice"), expires_at=time.time() - 1)

    outcome, _ = await handshake(
        AuthMiddleware(echo_app(), backend=BearerToken(expired)), ws_scope(headers=[("authorization", "Bearer x")])
    )
    assert (outcome.status, outcome.body) == (401, b"credentials expired")


async def test_token_subprotocol_is_hidden_from_the_app_and_never_selected() -> None:
    probe = Probe()
    stack = AuthMiddleware(
        SubprotocolMiddleware(echo_app(probe), supported=["chat.v2"]), backend=SubprotocolToken(lookup)
    )
    outcome, comm = await handshake(stack, ws_scope(subprotocols=["chat.v2", "bearer.tok-alice"]))
    assert outcome.subprotocol == "chat.v2"
    hello = json.loads((await comm.receive_output(1))["text"])
    assert hello["subprotocols"] == ["chat.v2"] and hello["user"] == "alice"

    # An app that tries to select the token entry anyway never echoes it.
    naughty = AuthMiddleware(echo_app(accept_subprotocol="bearer.tok-alice"), backend=SubprotocolToken(lookup))
    outcome, _ = await handshake(naughty, ws_scope(subprotocols=["bearer.tok-alice"]))
    assert outcome.kind == "accepted" and outcome.subprotocol is None

    outcome, _ = await handshake(stack, ws_scope(subprotocols=["chat.v2", "bearer.a", "bearer.b"]))
    assert (outcome.status, outcome.body) == (401, b"more than one token subprotocol offered")


async def test_credentials_never_reach_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level("DEBUG", logger="asgi_ws")
    tickets = SignedTicket([KEY_NEW], max_age=30)
    mw = AuthMiddleware(echo_app(), backend=[tickets, BearerToken(lookup), SubprotocolToken(lookup)])
    secrets = [issued_in_the_past(tickets, 120, monkeypatch), "tok-alice-but-wrong", "tok-alice"]
    await handshake(mw, ws_scope(query=f"ticket={secrets[0]}"))
    await handshake(mw, ws_scope(headers=[("authorization", f"Bearer {secrets[1]}")]))
    await handshake(mw, ws_scope(subprotocols=[f"bearer.{secrets[1]}"]))
    await handshake(mw, ws_scope(subprotocols=[f"bearer.{secrets[2]}"]))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused by AuthMiddleware: 401 ticket expired" in text
    for secret in secrets:
        assert secret not in text


# -- end to end through uvicorn -----------------------------------------------------------


async def test_auth_end_to_end(ws_impl: str) -> None:
    tickets = SignedTicket([KEY_OLD, KEY_NEW], max_age=30)
    app = AuthMiddleware(
        SubprotocolMiddleware(echo_app(), supported=["chat.v2"], required=False),
        backend=[tickets, BearerToken(lookup), SubprotocolToken(lookup)],
    )
    async with serve(app, ws=ws_impl) as server:
        url = server.ws_url("/ws")
        async with opened(url, additional_headers={"Authorization": "Bearer tok-alice"}) as conn:
            assert json.loads(await conn.recv())["user"] == "alice"
        async with opened(f"{url}?ticket={tickets.issue('bob')}") as conn:
            assert json.loads(await conn.recv())["user"] == "bob"
        async with opened(url, subprotocols=["chat.v2", "bearer.tok-bob"]) as conn:
            assert conn.subprotocol == "chat.v2"
            assert json.loads(await conn.recv())["subprotocols"] == ["chat.v2"]

        refused = await refusal(url)
        assert (refused.status, refused.body) == (401, "authentication required")
        assert refused.headers.get("www-authenticate") == "Bearer"
        refused = await refusal(url, additional_headers={"Authorization": "Bearer wrong"})
        assert (refused.status, refused.body) == (401, "invalid bearer token")
        retired = SignedTicket(["retired-key-0123456789ab"]).issue("alice")
        refused = await refusal(f"{url}?ticket={retired}")
        assert (refused.status, refused.body) == (401, "invalid ticket")


async def test_forbidden_end_to_end(ws_impl: str) -> None:
    app = AuthMiddleware(echo_app(), backend=BearerToken(lookup), authorize=lambda scope, ident: False)
    async with serve(app, ws=ws_impl) as server:
        refused = await refusal(server.ws_url("/ws"), additional_headers={"Authorization": "Bearer tok-alice"})
        assert (refused.status, refused.body) == (403, "forbidden")


async def test_connection_outliving_its_credentials_is_closed_with_4401(ws_impl: str) -> None:
    lifetime = 0.6

    def short_lived(token: str) -> Identity:
        return Identity(user=User("alice"), expires_at=time.time() + lifetime)

    probe = Probe()
    app = AuthMiddleware(echo_app(probe), backend=BearerToken(short_lived))
    async with serve(app, ws=ws_impl) as server:
        async with opened(server.ws_url("/ws"), additional_headers={"Authorization": "Bearer x"}) as conn:
            await conn.recv()
            await conn.send("still here")
            assert await conn.recv() == "still here"
            with pytest.raises(ClientConnectionClosed):
                while True:
                    await asyncio.wait_for(conn.recv(), 10)
            assert conn.close_code == CloseCode.CREDENTIALS_EXPIRED == 4401
            assert conn.close_reason == "credentials expired"
        await probe.wait_ended()
    assert probe.disconnects == [{"type": "websocket.disconnect", "code": 4401, "reason": "credentials expired"}]
    (error,) = probe.send_errors
    assert isinstance(error, ConnectionClosed) and isinstance(error, OSError) and error.code == 4401


async def test_ticket_with_expires_at_closes_the_live_connection(ws_impl: str) -> None:
    tickets = SignedTicket([KEY_NEW])
    probe = Probe()
    async with serve(AuthMiddleware(echo_app(probe), backend=tickets), ws=ws_impl) as server:
        ticket = tickets.issue("alice", expires_at=time.time() + 0.5)
        async with opened(server.ws_url(f"/ws?ticket={ticket}")) as conn:
            await conn.recv()
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert conn.close_code == 4401
        await probe.wait_ended()
    assert probe.disconnects[0]["code"] == 4401
