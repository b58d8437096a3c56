"""``asgi-ws serve`` without ``ASGI_WS_RESUME_KEYS``: said at start-up, and in the refusal."""

from __future__ import annotations

import logging

import pytest

from asgi_ws.cli import build_app
from tests.resume.wire import Stream, opened, refused
from tests.support.procs import free_port
from tests.support.server import serve


def warnings_about_keys(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "ASGI_WS_RESUME_KEYS" in r.getMessage()
    ]


def test_random_keys_are_warned_about_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        build_app(resume_keys=["a-key-set-by-the-operator"])
        assert warnings_about_keys(caplog) == []
        build_app()
    assert len(warnings_about_keys(caplog)) == 1


async def test_a_token_from_before_a_restart_is_refused_saying_keys_change_on_restart() -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws"
    stream = Stream()
    async with serve(build_app(), lifespan="on", port=port):
        ws = await opened(url, stream, origin=origin)
        ws.transport.abort()
    async with serve(build_app(), lifespan="on", port=port):  # restarted: a new random key
        _, _, failed = await refused(stream.url(url), origin=origin)
    assert failed["code"] == "invalid_token"
    assert "unknown key (keys change on restart unless ASGI_WS_RESUME_KEYS is set)" in failed["reason"]
