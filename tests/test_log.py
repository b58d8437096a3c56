from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws import AuthMiddleware, OriginMiddleware, ResumeMiddleware
from asgi_ws._scope import query_name, query_param
from asgi_ws.auth import BearerToken, QueryToken, SignedTicket
from asgi_ws.log import (
    DENIAL_SENT,
    REDACTED,
    SERVER_LOGGERS,
    SPURIOUS_HANDSHAKE_ERROR,
    RedactQueryParams,
    ServerLogBridge,
    SpuriousHandshakeError,
    redact_loggers,
    redact_server_logs,
    settle,
    uvicorn_log_config,
)
from tests.support.apps import echo_app
from tests.support.clients import opened, refusal
from tests.support.logs import captured_logs
from tests.support.server import serve


def test_redact_masks_only_the_named_parameters() -> None:
    redactor = RedactQueryParams(["ticket", "token"])
    assert redactor.redact("/ws?ticket=abc.def&room=1&token=x") == "/ws?ticket=[redacted]&room=1&token=[redacted]"
    assert redactor.redact("/ws?room=1&tickets=keep") == "/ws?room=1&tickets=keep"
    assert redactor.redact('"WebSocket /ws?ticket=a%2Fb" 403') == '"WebSocket /ws?ticket=[redacted]" 403'
    assert redactor.redact("no query here") == "no query here"


def test_names_are_compared_decoded_as_query_param_reads_them() -> None:
    redactor = RedactQueryParams(["token", "my token"])
    # Each of these names authenticates as "token" (or "my token"): each value is masked.
    for spelt in ("%74oken", "t%6Fken", "t%6fken", "%74%6F%6B%65%6E", "my+token", "my%20token"):
        scope = {"query_string": f"{spelt}=SECRET".encode()}
        assert query_param(scope, query_name(spelt)) == "SECRET"
        assert redactor.redact(f"/ws?{spelt}=SECRET") == f"/ws?{spelt}=[redacted]"
    # Every occurrence, not only the first (query_param reads the first; an app may read another).
    assert redactor.redact("/ws?token=a&x=1&%74oken=b") == "/ws?token=[redacted]&x=1&%74oken=[redacted]"
    # Names are case-sensitive, as query_param compares them.
    assert redactor.redact("/ws?Token=kept") == "/ws?Token=kept"
    # A quote or a "?" inside a value does not end it early.
    assert redactor.redact('/ws?token=a"b?c&room=1') == "/ws?token=[redacted]&room=1"
    assert redactor.redact('"GET /ws?token=abc" 200') == '"GET /ws?token=[redacted]" 200'


def test_the_default_filter_masks_resume_tokens() -> None:
    redactor = RedactQueryParams()
    assert redactor.redact("/ws?ws_resume=eyJz.abc.def&ws_seq=12") == "/ws?ws_resume=[redacted]&ws_seq=12"


def test_filter_rewrites_message_and_args_and_keeps_the_record() -> None:
    redactor = RedactQueryParams()
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s"', ("1.2.3.4", "/ws?token=s3"), None
    )
    assert redactor.filter(record) is True
    assert record.getMessage() == '1.2.3.4 - "WebSocket /ws?token=[redacted]"'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /?ticket=s3 %(a)s", None, None)
    record.args = {"a": "/?access_token=s4"}
    redactor.filter(record)
    assert record.getMessage() == "GET /?ticket=[redacted] /?access_token=[redacted]"


async def test_uvicorn_logs_no_ticket_with_the_provided_log_config(capfd: pytest.CaptureFixture[str]) -> None:
    tickets = SignedTicket(["k" * 32])
    ticket = tickets.issue("alice")
    app = AuthMiddleware(echo_app(), backend=tickets)
    async with serve(app, log_config=uvicorn_log_config(), log_level="info") as server:
        async with opened(server.ws_url(f"/ws?ticket={ticket}&room=lobby")) as conn:
            await conn.recv()
    err = capfd.readouterr().err
    assert '"WebSocket /ws?ticket=[redacted]&room=lobby" [accepted]' in err
    assert ticket not in err


async def test_redact_loggers_on_an_already_configured_server(capfd: pytest.CaptureFixture[str]) -> None:
    tickets = SignedTicket(["k" * 32])
    ticket = tickets.issue("alice")
    redactor = redact_loggers()
    try:
        async with serve(AuthMiddleware(echo_app(), backend=tickets), log_level="info") as server:
            async with opened(server.ws_url(f"/ws?ticket={ticket}")) as conn:
                await conn.recv()
    finally:
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).removeFilter(redactor)
    err = capfd.readouterr().err
    assert "ticket=[redacted]" in err and ticket not in err


# -- the filter and query_param agree, whatever the query string ---------------------------

SECRETS = ("ticket", "token", "my token")


def _spelt(name: str) -> st.SearchStrategy[str]:
    """Any spelling of ``name`` that decodes to it: each character literal or %-escaped in either case."""

    def variants(char: str) -> st.SearchStrategy[str]:
        escape = "".join(f"%{b:02X}" for b in char.encode())
        options = [escape, escape.lower(), "+" if char == " " else char]
        return st.sampled_from(options)

    return st.tuples(*(variants(c) for c in name)).map("".join)


#: Request targets hold no spaces (every server splits the request line on them).
_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_VALUES = st.text(st.one_of(_CHARS, st.sampled_from("%+=?\"'#&é")), max_size=12)
_PAIRS = st.one_of(
    st.tuples(st.sampled_from(SECRETS).flatmap(_spelt), _VALUES).map("=".join),
    st.tuples(st.text(_CHARS, max_size=6), _VALUES).map("=".join),
    st.text(_CHARS, max_size=10),
)
_QUERIES = st.one_of(st.lists(_PAIRS, max_size=6).map("&".join), st.text(_CHARS, max_size=30))


@given(_QUERIES)
def test_no_value_query_param_returns_for_a_secret_name_survives_redaction(query: str) -> None:
    redactor = RedactQueryParams(SECRETS)
    prefix, suffix = '127.0.0.1:5000 - "WebSocket /ws?', '" [accepted]'
    pairs = query.split("&")
    secret = [i for i, pair in enumerate(pairs) if "=" in pair and query_name(pair.partition("=")[0]) in SECRETS]
    # The line as it should be: every secret value, and nothing else, replaced by a mark.
    ideal = prefix + "&".join(p.partition("=")[0] + "=\0" if i in secret else p for i, p in enumerate(pairs)) + suffix
    for line, framed in ((prefix + query + suffix, True), ("/ws?" + query, False)):  # a message, an argument
        redacted = redactor.redact(line).replace(REDACTED, "\0")
        if framed:
            assert redacted.startswith(prefix) and redacted.endswith(suffix)
            out = redacted[len(prefix) : len(redacted) - len(suffix)].split("&")
            assert len(out) == len(pairs)
            for i in secret:
                assert out[i] == pairs[i].partition("=")[0] + "=\0", (pairs[i], out[i])
        values = [pairs[i].partition("=")[2] for i in secret]
        for name in SECRETS:
            found = query_param({"query_string": query.encode("latin-1")}, name)
            if found is not None:
                values.append(found)
        for value in values + [unquote_plus(v) for v in values]:
            # A value may still appear where the query shows it in a public place (the path,
            # another parameter), never elsewhere.
            assert "\0" in value or value not in redacted or value in ideal, (line, value, redacted)


async def test_a_percent_encoded_name_is_masked_in_uvicorns_log(
    ws_impl: str, capfd: pytest.CaptureFixture[str]
) -> None:
    app = AuthMiddleware(echo_app(), backend=QueryToken({"SECRET-TOKEN-1": "alice"}.get))
    async with serve(app, ws=ws_impl, log_config=uvicorn_log_config(), log_level="info") as server:
        async with opened(server.ws_url("/ws?%74oken=SECRET-TOKEN-1&room=lobby")) as conn:
            await conn.recv()  # authenticated: the server read the token under its decoded name
    err = capfd.readouterr().err
    assert '"WebSocket /ws?%74oken=[redacted]&room=lobby" [accepted]' in err
    assert "SECRET-TOKEN-1" not in err


# -- on by default: redaction, uvicorn's spurious ERROR, the library's lines in uvicorn's log -----


def test_middlewares_reading_a_query_credential_mask_it_in_uvicorns_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[list[str]] = []
    monkeypatch.setattr("asgi_ws.middleware.auth.redact_server_logs", lambda params: installed.append(list(params)))
    monkeypatch.setattr("asgi_ws.middleware.resume.redact_server_logs", lambda params: installed.append(list(params)))
    tickets = SignedTicket(["k" * 32], param="t")
    mw = AuthMiddleware(echo_app(), backend=[tickets, QueryToken(lambda token: None), BearerToken(lambda token: None)])
    assert mw.query_params == ["t", "token"] and installed == [["t", "token"]]
    AuthMiddleware(echo_app(), backend=BearerToken(lambda token: None))  # nothing in the query: nothing to mask
    AuthMiddleware(echo_app(), backend=tickets, redact_logs=False)
    ResumeMiddleware(echo_app(), secret_keys=["r" * 32])
    ResumeMiddleware(echo_app(), secret_keys=["r" * 32], redact_logs=False)
    assert installed == [["t", "token"], ["ws_resume"]]


def test_the_server_filter_is_one_filter_on_each_logger_whose_names_accumulate() -> None:
    first = redact_server_logs(["ticket"])
    assert redact_server_logs(["my_token"]) is first
    for name in SERVER_LOGGERS:
        assert logging.getLogger(name).filters.count(first) == 1
    assert {"ticket", "my_token"} <= first.params
    assert first.redact("/ws?my_token=abc&x=1") == "/ws?my_token=[redacted]&x=1"


async def test_uvicorns_spurious_error_is_dropped_only_after_a_denial_response() -> None:
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, SPURIOUS_HANDSHAKE_ERROR, None, None)
    spurious = SpuriousHandshakeError()

    async def in_a_task(denied: bool) -> bool:
        if denied:
            DENIAL_SENT.set(True)
        return spurious.filter(record)

    assert await asyncio.create_task(in_a_task(True)) is False
    assert await asyncio.create_task(in_a_task(False)) is True  # another connection's context: kept
    assert spurious.filter(record) is True


async def test_an_app_that_really_returns_without_answering_still_logs_uvicorns_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def mute(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    uvicorn_logger = logging.getLogger("uvicorn")  # as log_config=None leaves it (other tests configure it)
    monkeypatch.setattr(uvicorn_logger, "handlers", [])
    monkeypatch.setattr(uvicorn_logger, "propagate", True)
    settle()
    with captured_logs(logging.INFO) as records:
        async with serve(OriginMiddleware(mute, allow_origins=["https://ok.example"]), log_config=None) as server:
            assert (await refusal(server.ws_url("/ws"), origin="https://evil.example")).status == 403
            with contextlib.suppress(Exception):
                async with opened(server.ws_url("/ws"), origin="https://ok.example"):
                    pass
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert errors == [SPURIOUS_HANDSHAKE_ERROR]  # the mute app's, not the refusal's


def test_the_bridge_hands_records_to_uvicorn_only_while_nothing_else_prints_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = logging.getLogger("asgi_ws.test.server")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    monkeypatch.setattr(target, "handlers", [handler])
    monkeypatch.setattr(target, "propagate", False)
    target.setLevel(logging.INFO)
    bridge = ServerLogBridge(target)
    monkeypatch.setattr(logging.getLogger("asgi_ws"), "handlers", [bridge])
    record = logging.LogRecord("asgi_ws.handshake", logging.INFO, __file__, 1, "refused %s", ("x",), None)
    monkeypatch.setattr(logging.root, "handlers", [])
    bridge.emit(record)
    debug = logging.LogRecord("asgi_ws.handshake", logging.DEBUG, __file__, 1, "detail", None, None)
    bridge.emit(debug)  # below uvicorn's level
    assert seen == ["refused x"]
    monkeypatch.setattr(logging.root, "handlers", [logging.NullHandler()])  # logging configured since
    bridge.emit(record)
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.getLogger("asgi_ws"), "handlers", [bridge, logging.NullHandler()])
    bridge.emit(record)
    assert seen == ["refused x"]
