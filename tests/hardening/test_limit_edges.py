"""The size limits at their edges, on a real server: exactly the limit, one over, and multi-byte
UTF-8 around it.

- RateLimitMiddleware's ``max_message_size`` counts UTF-8 bytes (text) and bytes (binary): a
  message of exactly the limit is delivered, one byte more closes with 1009, whatever the
  width of the characters that make it up.
- A control message is at most 65,536 *characters* (docs/protocol.md §1): one of exactly that
  many is answered, one more is ``too_large``; neither closes the connection.

A bystander connection on the same server must keep being served after every example.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import HeartbeatMiddleware, RateLimitMiddleware
from asgi_ws.protocol import MAX_CONTROL_LENGTH
from tests.hardening.test_e2e import FIXTURE_ONCE, LoopThread, assert_no_error, within
from tests.support.apps import echo_app
from tests.support.logs import captured_logs
from tests.support.server import serve

LIMIT = 1000
#: One character of each UTF-8 width: 1, 2, 3 and 4 bytes.
WIDE = ("a", "é", "€", "😀")


def sized(char: str, size: int) -> str:
    """Text of exactly ``size`` UTF-8 bytes: as many ``char`` as fit, then ASCII."""
    count = size // len(char.encode())
    text = char * count
    return text + "x" * (size - len(text.encode()))


@dataclass
class Place:
    loop: LoopThread
    url: str
    logs: list[logging.LogRecord]
    bystander: ClientConnection | None = None

    def connect(self) -> Any:
        return connect(self.url, ping_interval=None, max_size=None, open_timeout=10, close_timeout=2)

    async def bystander_served(self, marker: str) -> None:
        assert self.bystander is not None
        await self.bystander.send(marker)
        assert await within(self.bystander.recv(), "the bystander's echo") == marker


@pytest.fixture
def place() -> Iterator[Place]:
    app = RateLimitMiddleware(HeartbeatMiddleware(echo_app(), interval=20, timeout=20), max_message_size=LIMIT)
    with captured_logs(logging.WARNING) as logs:
        loop = LoopThread()
        server_cm = serve(app, log_config=None)
        try:
            server = loop.run(server_cm.__aenter__(), 30, "the server's start")
            here = Place(loop, server.ws_url("/ws"), logs)

            async def setup() -> None:
                here.bystander = await here.connect()
                await within(here.bystander.recv(), "the echo app's greeting")

            loop.run(setup(), 30, "the bystander")
            yield here
            assert here.bystander is not None
            loop.run(here.bystander.close(), 10, "closing the bystander")
            loop.run(server_cm.__aexit__(None, None, None), 30, "the server's stop")
        finally:
            loop.close()
    assert_no_error(logs)


@settings(FIXTURE_ONCE, max_examples=40)
@given(char=st.sampled_from(WIDE), over=st.integers(-3, 3), binary=st.booleans())
def test_a_message_of_the_size_limit_passes_and_one_byte_more_closes_with_1009(
    place: Place, char: str, over: int, binary: bool
) -> None:
    text = sized(char, LIMIT + over)
    data: str | bytes = text.encode() if binary else text

    async def example() -> None:
        ws = await place.connect()
        try:
            await within(ws.recv(), "the echo app's greeting")
            await ws.send(data)
            try:
                reply = await within(ws.recv(), "the echo")
            except ConnectionClosed as closed:
                assert over > 0, f"{LIMIT + over} bytes closed the connection ({closed.rcvd})"
                assert closed.rcvd is not None and closed.rcvd.code == 1009, closed.rcvd
                return
            assert over <= 0, f"{LIMIT + over} bytes were delivered over a limit of {LIMIT}"
            assert reply == data
        finally:
            await ws.close()
        await place.bystander_served(f"after {char!r} {over} {binary}")

    place.loop.run(example(), 30, f"{LIMIT + over} bytes of {char!r}")
    assert_no_error(place.logs)


@settings(FIXTURE_ONCE, max_examples=12)
@given(char=st.sampled_from(WIDE), over=st.integers(-2, 2))
def test_a_control_message_of_65536_characters_is_answered_and_one_more_is_too_large(
    char: str, over: int, control_place: Place
) -> None:
    head, tail = '{"$ws":"ping","id":1,"pad":"', '"}'
    text = head + char * (MAX_CONTROL_LENGTH + over - len(head) - len(tail)) + tail
    assert len(text) == MAX_CONTROL_LENGTH + over

    async def example() -> None:
        ws = control_place.bystander
        assert ws is not None
        await ws.send(text)
        reply = json.loads(await within(ws.recv(), "the answer"))
        if over <= 0:
            assert reply == {"$ws": "pong", "id": 1}
        else:
            assert (reply["$ws"], reply["code"]) == ("error", "too_large"), reply
        await ws.send('{"$ws":"ping","id":2}')  # not closed: the next one is answered
        assert json.loads(await within(ws.recv(), "the next pong")) == {"$ws": "pong", "id": 2}

    control_place.loop.run(example(), 30, f"{len(text)} characters of {char!r}")
    assert_no_error(control_place.logs)


@pytest.fixture
def control_place() -> Iterator[Place]:
    """An endpoint with no size limit but the protocol's (and uvicorn's 16 MiB)."""
    app = HeartbeatMiddleware(echo_app(), interval=20, timeout=20)
    with captured_logs(logging.WARNING) as logs:
        loop = LoopThread()
        server_cm = serve(app, log_config=None)
        try:
            server = loop.run(server_cm.__aenter__(), 30, "the server's start")
            here = Place(loop, server.ws_url("/ws"), logs)

            async def setup() -> None:
                here.bystander = await here.connect()
                await within(here.bystander.recv(), "the echo app's greeting")
                await here.bystander.send(json.dumps({"$ws": "hello", "v": 1}))
                assert json.loads(await within(here.bystander.recv(), "welcome"))["$ws"] == "welcome"

            loop.run(setup(), 30, "the client")
            yield here
            assert here.bystander is not None
            loop.run(here.bystander.close(), 10, "closing the client")
            loop.run(server_cm.__aexit__(None, None, None), 30, "the server's stop")
        finally:
            loop.close()
    assert_no_error(logs)
