from __future__ import annotations

import logging

import pytest

from asgi_ws import AuthMiddleware
from asgi_ws.auth import SignedTicket
from asgi_ws.log import RedactQueryParams, redact_loggers, uvicorn_log_config
from tests.support.apps import echo_app
from tests.support.clients import opened
from tests.support.server import serve


def test_redact_masks_only_the_named_parameters() -> None:
    redactor = RedactQueryParams(["ticket", "token"])
    assert redactor.redact("/ws?ticket=abc.def&room=1&token=x") == "/ws?ticket=[redacted]&room=1&token=[redacted]"
    assert redactor.redact("/ws?room=1&tickets=keep") == "/ws?room=1&tickets=keep"
    assert redactor.redact('"WebSocket /ws?ticket=a%2Fb" 403') == '"WebSocket /ws?ticket=[redacted]" 403'
    assert redactor.redact("no query here") == "no query here"


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
