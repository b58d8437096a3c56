from __future__ import annotations

import asyncio
import json
import logging
import re
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
    HandshakeRejected,
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


# -- a backend that fails or hangs: 503, one WARNING, no credential ------------------------

SECRET = "tok-SECRET-42"


def handshake_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asgi_ws.handshake"]


def _broken(token: str) -> str:
    raise ConnectionRefusedError(f"database down while looking up {token}")


async def _hangs(*args: Any) -> Any:
    await asyncio.Event().wait()


def _load_user_raises(user_id: str) -> Any:
    raise KeyError(f"no row for {user_id} with {SECRET}")


TICKETS = SignedTicket([KEY_NEW])
#: Stands for a ticket issued when the test runs (one issued at collection may expire before).
FRESH_TICKET = "<fresh ticket>"


@pytest.mark.parametrize(
    ("make", "credential", "cause"),
    [
        (lambda: {"backend": BearerToken(_broken)}, SECRET, "backend 'bearer token' raised ConnectionRefusedError"),
        (lambda: {"backend": BearerToken(_hangs)}, SECRET, "backend 'bearer token' did not answer within 0.2 s"),
        (
            lambda: {"backend": BearerToken(lookup), "authorize": lambda scope, identity: 1 / 0},
            "tok-alice",
            "authorize raised ZeroDivisionError",
        ),
        (
            lambda: {"backend": BearerToken(lookup), "authorize": _hangs},
            "tok-alice",
            "authorize did not answer within 0.2 s",
        ),
        (
            lambda: {"backend": BearerToken(SignedTicket([KEY_NEW], load_user=_load_user_raises).verify)},
            FRESH_TICKET,
            "backend 'bearer token' raised KeyError",
        ),
        (
            lambda: {"backend": SignedTicket([KEY_NEW], load_user=_hangs)},
            None,
            "backend 'ticket' did not answer within 0.2 s",
        ),
    ],
)
async def test_a_failing_or_hanging_backend_or_hook_is_a_503_logged_once_without_the_credential(
    make: Any, credential: str | None, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    probe = Probe()
    mw = AuthMiddleware(echo_app(probe), backend_timeout=0.2, **make())
    ticket = TICKETS.issue("alice")
    if credential == FRESH_TICKET:
        credential = ticket
    scope = (
        ws_scope(query=f"ticket={ticket}")
        if credential is None
        else ws_scope(headers=[("authorization", f"Bearer {credential}")])
    )
    outcome, _ = await handshake(mw, scope)
    assert (outcome.status, outcome.body) == (503, b"authentication backend unavailable")
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "asgi_ws.handshake" and record.levelno == logging.WARNING
    assert record.exc_info is None
    line = record.getMessage()
    assert line.endswith(f"refused by AuthMiddleware: 503 authentication backend unavailable ({cause})"), line
    for secret in (SECRET, ticket, credential or ticket):
        assert secret not in caplog.text
    assert probe.calls == 0


async def test_the_timeout_bounds_all_backends_together_and_none_means_no_bound() -> None:
    async def slow(token: str) -> str:
        await asyncio.sleep(0.05)
        return "alice"

    mw = AuthMiddleware(echo_app(), backend=BearerToken(slow), backend_timeout=None)
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer x")]))
    assert outcome.kind == "accepted"
    # Refusals a backend raises on purpose keep their status inside the bound.
    mw = AuthMiddleware(echo_app(), backend=BearerToken(lookup), backend_timeout=5)
    outcome, _ = await handshake(mw, ws_scope(headers=[("authorization", "Bearer wrong")]))
    assert (outcome.status, outcome.body) == (401, b"invalid bearer token")


async def test_a_cancelled_handshake_stays_cancelled_inside_the_bound() -> None:
    """Only the bound's own expiry becomes a 503; a server cancelling the task wins."""
    entered = asyncio.Event()

    async def slow(token: str) -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    mw = AuthMiddleware(echo_app(), backend=BearerToken(slow), backend_timeout=60)
    task = asyncio.ensure_future(mw.authenticate(ws_scope(headers=[("authorization", "Bearer x")])))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    # The bound expiring while nothing else cancels: a 503, and the task is not left cancelling.
    mw = AuthMiddleware(echo_app(), backend=BearerToken(slow), backend_timeout=0.05)
    with pytest.raises(HandshakeRejected) as info:
        await mw.authenticate(ws_scope(headers=[("authorization", "Bearer x")]))
    assert info.value.status == 503
    current = asyncio.current_task()
    assert current is not None and getattr(current, "cancelling", lambda: 0)() == 0  # Python 3.11+
    await asyncio.sleep(0)  # no stray cancellation arrives later


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expired_close_code": 1006}, "expired_close_code=1006 cannot be sent"),
        ({"expired_close_code": "4401"}, "expired_close_code must be an int"),
        ({"backend_timeout": 0}, "backend_timeout must be a positive"),
        ({"backend_timeout": -1.0}, "backend_timeout must be a positive"),
    ],
)
def test_middleware_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AuthMiddleware(echo_app(), backend=BearerToken(lookup), **kwargs)


async def test_refusal_lines_name_the_check_that_failed_never_the_credential(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level("INFO", logger="asgi_ws")
    tickets = SignedTicket([KEY_NEW], max_age=30, load_user=lambda user_id: None if user_id == "gone" else user_id)
    mw = AuthMiddleware(echo_app(), backend=[tickets, BearerToken(lookup)], authorize=lambda s, i: i.user != "bob")
    expired = issued_in_the_past(tickets, 120, monkeypatch)
    forged = SignedTicket(["attacker-key-0123456789"]).issue("admin")
    cases = [
        (ws_scope(), "401 authentication required (no credentials for: ticket, bearer token)"),
        (ws_scope(query=f"ticket={forged}"), "401 invalid ticket (backend 'ticket': bad signature or format)"),
        (ws_scope(query=f"ticket={expired}"), "401 ticket expired (backend 'ticket': issued N s ago, max_age 30 s)"),
        (
            ws_scope(query=f"ticket={tickets.issue('gone')}"),
            "401 unknown user (backend 'ticket': load_user returned None)",
        ),
        (
            ws_scope(headers=[("authorization", "Bearer nope-SECRET")]),
            "401 invalid bearer token (backend 'bearer token': verify returned None)",
        ),
        (ws_scope(query=f"ticket={tickets.issue('bob')}"), "403 forbidden (authorize returned False)"),
    ]
    for scope, expected in cases:
        caplog.clear()
        await handshake(mw, scope)
        (record,) = handshake_records(caplog)
        line = re.sub(r"issued 12[01] s", "issued N s", record.getMessage())  # whole seconds: 120 or 121
        assert line.endswith(f"refused by AuthMiddleware: {expected}"), line
        assert record.levelno == logging.INFO
        for secret in (forged, expired, "nope-SECRET"):
            assert secret not in caplog.text


async def test_a_failing_backend_end_to_end_is_a_503_not_a_500(ws_impl: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    app = AuthMiddleware(echo_app(), backend=[BearerToken(_broken), QueryToken(_hangs)], backend_timeout=0.3)
    async with serve(app, ws=ws_impl, log_config=None) as server:
        url = server.ws_url("/ws")
        refused = await refusal(url, additional_headers={"Authorization": f"Bearer {SECRET}"})
        assert (refused.status, refused.body) == (503, "authentication backend unavailable")
        refused = await refusal(f"{url}?token={SECRET}")
        assert (refused.status, refused.body) == (503, "authentication backend unavailable")
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if r.exc_info is not None or "Exception in ASGI" in r.getMessage()]
    warnings = [r.getMessage() for r in caplog.records if r.name == "asgi_ws.handshake"]
    assert len(warnings) == 2 and "raised ConnectionRefusedError" in warnings[0]
    assert "backend 'query token' did not answer within 0.3 s" in warnings[1]
