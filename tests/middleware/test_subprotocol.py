from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from asgi_ws import AuthMiddleware, ConfigurationError, SubprotocolMiddleware, SubprotocolRejected
from asgi_ws.auth import SubprotocolToken
from asgi_ws.middleware.subprotocol import select_subprotocol
from asgi_ws.types import Scope
from tests.support.apps import Probe, echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.clients import opened, refusal
from tests.support.server import serve


@pytest.mark.parametrize(
    ("offered", "supported", "prefer", "expected"),
    [
        (["chat.v1", "chat.v2"], ["chat.v2", "chat.v1"], "server", "chat.v2"),
        (["chat.v1", "chat.v2"], ["chat.v2", "chat.v1"], "client", "chat.v1"),
        (["mqtt"], ["chat.v2", "chat.v1"], "server", None),
        ([], ["chat.v2"], "server", None),
        (["chat.v1"], ["chat.v2", "chat.v1"], "server", "chat.v1"),
        (["x", "chat.v1", "chat.v2"], ["chat.v1", "chat.v2"], "client", "chat.v1"),
    ],
)
def test_select_subprotocol(offered: list[str], supported: list[str], prefer: str, expected: str | None) -> None:
    assert select_subprotocol(offered, supported, prefer=prefer) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"supported": []}, "non-empty list"),
        ({"supported": "chat.v1"}, "non-empty list"),
        ({"supported": ["chat v1"]}, "not a valid subprotocol token"),
        ({"supported": [""]}, "not a valid subprotocol token"),
        ({"supported": ["chat"], "prefer": "random"}, "prefer must be"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SubprotocolMiddleware(echo_app(), **kwargs)  # type: ignore[arg-type]


async def test_choice_is_visible_before_accept_and_put_in_the_accept() -> None:
    seen: list[object] = []

    async def app(scope: Scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append(scope["asgi_ws"]["subprotocol"])
        await receive()
        await send({"type": "websocket.accept"})

    mw = SubprotocolMiddleware(app, supported=["chat.v2", "chat.v1"])
    outcome, _ = await handshake(mw, ws_scope(subprotocols=["chat.v1", "chat.v2"]))
    assert seen == ["chat.v2"]
    assert outcome.subprotocol == "chat.v2"


async def test_the_apps_own_choice_wins() -> None:
    mw = SubprotocolMiddleware(echo_app(accept_subprotocol="chat.v1"), supported=["chat.v2", "chat.v1"])
    outcome, _ = await handshake(mw, ws_scope(subprotocols=["chat.v1", "chat.v2"]))
    assert outcome.subprotocol == "chat.v1"


async def test_required_refuses_with_400_and_names_what_is_supported() -> None:
    probe = Probe()
    mw = SubprotocolMiddleware(echo_app(probe), supported=["chat.v2", "chat.v1"])
    outcome, _ = await handshake(mw, ws_scope(subprotocols=["mqtt"]))
    assert (outcome.status, outcome.body) == (
        400,
        b"none of the offered subprotocols is supported; supported: chat.v2, chat.v1",
    )
    outcome, _ = await handshake(mw, ws_scope())
    assert (outcome.status, outcome.body) == (
        400,
        b"no subprotocol offered; this endpoint requires one of: chat.v2, chat.v1",
    )
    assert probe.calls == 0


async def test_not_required_accepts_without_a_subprotocol() -> None:
    mw = SubprotocolMiddleware(echo_app(), supported=["chat.v2"], required=False)
    outcome, comm = await handshake(mw, ws_scope(subprotocols=["mqtt"]))
    assert outcome.kind == "accepted" and outcome.subprotocol is None
    assert json.loads((await comm.receive_output(1))["text"])["subprotocol"] is None


async def test_custom_selector_sync_async_and_refusing() -> None:
    def pick_last(scope: Scope, offered: Sequence[str]) -> str | None:
        return offered[-1] if offered else None

    async def refuse(scope: Scope, offered: Sequence[str]) -> str | None:
        raise SubprotocolRejected("version too old", status=426)

    def pick_unoffered(scope: Scope, offered: Sequence[str]) -> str | None:
        return "not.offered"

    outcome, _ = await handshake(
        SubprotocolMiddleware(echo_app(), supported=["a"], select=pick_last), ws_scope(subprotocols=["a", "b"])
    )
    assert outcome.subprotocol == "b"
    outcome, _ = await handshake(
        SubprotocolMiddleware(echo_app(), supported=["a"], select=refuse), ws_scope(subprotocols=["a"])
    )
    assert (outcome.status, outcome.body) == (426, b"version too old")
    outcome, _ = await handshake(
        SubprotocolMiddleware(echo_app(), supported=["a"], select=pick_unoffered), ws_scope(subprotocols=["a"])
    )
    assert (outcome.status, outcome.body) == (400, b"selected subprotocol 'not.offered' was not offered")


async def test_subprotocol_end_to_end(ws_impl: str) -> None:
    server_first = SubprotocolMiddleware(echo_app(), supported=["chat.v2", "chat.v1"])
    async with serve(server_first, ws=ws_impl) as server:
        async with opened(server.ws_url("/ws"), subprotocols=["chat.v1", "chat.v2"]) as conn:
            assert conn.subprotocol == "chat.v2"
            assert json.loads(await conn.recv())["subprotocol"] == "chat.v2"
        refused = await refusal(server.ws_url("/ws"), subprotocols=["mqtt"])
        assert refused.status == 400 and "supported: chat.v2, chat.v1" in refused.body
        refused = await refusal(server.ws_url("/ws"))
        assert refused.status == 400 and refused.body.startswith("no subprotocol offered")

    client_first = SubprotocolMiddleware(echo_app(), supported=["chat.v2", "chat.v1"], prefer="client")
    async with serve(client_first, ws=ws_impl) as server:
        async with opened(server.ws_url("/ws"), subprotocols=["chat.v1", "chat.v2"]) as conn:
            assert conn.subprotocol == "chat.v1"


async def test_refusal_line_names_what_the_client_offered_never_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="asgi_ws")
    # Wrongly placed outside AuthMiddleware, it still never logs a token subprotocol.
    app = SubprotocolMiddleware(
        AuthMiddleware(echo_app(), backend=SubprotocolToken(lambda token: "alice", prefix="tok.")),
        supported=["chat.v2"],
    )
    offers = [
        (["mqtt", "tok.SECRET-TOKEN"], "(offered 'mqtt', 'tok.'[redacted])"),
        ([f"p{i}" for i in range(20)], "(offered 'p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7' and 12 more)"),
        (["x\x1b[31m" + "y" * 100], "(offered 'x\\x1b[31m" + "y" * 34 + "'... (106 characters))"),
        ([], "(offered nothing)"),
    ]
    for offered, expected in offers:
        caplog.clear()
        outcome, _ = await handshake(app, ws_scope(subprotocols=offered))
        assert outcome.status == 400
        (record,) = [r for r in caplog.records if r.name == "asgi_ws.handshake"]
        assert record.getMessage().endswith(expected), record.getMessage()
    assert "SECRET-TOKEN" not in caplog.text and "\x1b" not in caplog.text
