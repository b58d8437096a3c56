"""A handler that fails for another reason than bad input: ``internal_error``, logged once, nothing else harmed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asgi_ws import HeartbeatMiddleware, PubSubApp, Rooms, connection_of
from asgi_ws.brokers import MemoryBroker
from asgi_ws.connection import Connection
from asgi_ws.types import Receive, Scope, Send
from tests.support.apps import echo_app
from tests.support.session import Harness


def failing(conn: Connection, message: dict[str, Any]) -> None:
    raise RuntimeError("a bug in a handler")


async def failing_later(conn: Connection, message: dict[str, Any]) -> None:
    raise KeyError("a bug after an await")


def with_failing_ops(app: Any) -> Any:
    async def registering(scope: Scope, receive: Receive, send: Send) -> None:
        conn = connection_of(scope)
        assert conn is not None
        conn.control.register("boom", failing)
        conn.control.register("boom_async", failing_later)
        await app(scope, receive, send)

    return HeartbeatMiddleware(registering)


def control_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asgi_ws.control"]


async def test_a_failing_handler_is_answered_and_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with Harness(with_failing_ops(echo_app())) as ws:
        await ws.next_text()  # the app's first message
        for op in ("boom", "boom_async"):
            ws.send_json({"$ws": op, "id": 1})
            assert await ws.next_json() == {
                "$ws": "error",
                "code": "internal_error",
                "message": "the server failed to handle this message (it is logged)",
                "ref": op,
            }
        ws.send_json({"$ws": "ping", "id": 2})  # the connection keeps working
        assert await ws.next_json() == {"$ws": "pong", "id": 2}
        ws.send_text("app message")
        assert await ws.next_text() == "app message"
    records = control_errors(caplog)
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR]  # once each
    assert all(r.exc_info is not None for r in records)


class BrokenBroker(MemoryBroker):
    """Subscribing fails, as a broker that went away would."""

    async def subscribe(self, channel: str) -> None:
        if channel.endswith(":down"):
            raise ConnectionError("the broker is unreachable")
        await super().subscribe(channel)


async def test_a_broker_error_in_a_subscribe_is_an_internal_error_for_that_request_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    app = PubSubApp(Rooms(BrokenBroker()))
    async with Harness(app) as ws:
        ws.send_json({"$ws": "subscribe", "channel": "down", "id": 1})
        reply = await ws.next_json()
        assert (reply["code"], reply["ref"]) == ("internal_error", "subscribe")
        ws.send_json({"$ws": "subscribe", "channel": "up", "id": 2})
        assert await ws.next_json() == {"$ws": "subscribed", "channel": "up", "id": 2}
    assert [r.levelno for r in control_errors(caplog)] == [logging.ERROR]
    await app.rooms.close()
