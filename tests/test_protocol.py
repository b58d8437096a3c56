"""The control-protocol codec and the per-connection router."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws import HeartbeatMiddleware, ProtocolError
from asgi_ws.protocol import MAX_CONTROL_LENGTH, PREFIX, decode, encode, error, field, is_control
from tests.support.apps import Probe, echo_app
from tests.support.session import Harness


def test_encode_puts_the_operation_first_so_the_prefix_test_works() -> None:
    assert encode("ping") == '{"$ws":"ping"}'
    assert encode("ping", {"id": 3}) == '{"$ws":"ping","id":3}'
    assert encode("welcome", {"text": "é"}) == '{"$ws":"welcome","text":"\\u00e9"}'  # ASCII: always sendable
    assert is_control(encode("anything", {"a": [1, {"b": None}]}))
    assert error("bad_json", "nope", "ping") == '{"$ws":"error","code":"bad_json","message":"nope","ref":"ping"}'
    assert decode(encode("pong", {"id": 9})) == {"$ws": "pong", "id": 9}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"$ws":"ping"', "bad_json"),
        ('{"$ws":"ping",}', "bad_json"),
        ('{"$ws":""}', "bad_message"),
        ('{"$ws":"' + "x" * 65 + '"}', "bad_message"),
        ('{"$ws":"a"} []', "bad_json"),
        ('{"$ws":"' + "[" * 100_000, "too_large"),
        ('{"$ws":"x","a":' + "[" * 30_000 + "]" * 30_000 + "}", "too_deep"),
        ('{"$ws":"x","a":' + "[" * 32 + "]" * 32 + "}", "too_deep"),
        ('{"$ws":"ping","id":"\\ud800"}', "bad_json"),
        ('{"$ws":"ping","id":NaN}', "bad_json"),
        ('{"$ws":"ping","id":[1]}', "bad_field"),
        ('{"$ws":"x","n":' + "9" * 5000 + "}", "bad_json"),
    ],
)
def test_decode_refuses_malformed_messages_with_a_code(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(text)
    assert info.value.code == code


def test_field_checks_types_and_never_takes_a_bool_for_a_number() -> None:
    assert field({"$ws": "x", "id": 3}, "id", int) == 3
    assert field({"$ws": "x"}, "id", int, required=False) is None
    for bad in ({"$ws": "x", "id": True}, {"$ws": "x", "id": "3"}, {"$ws": "x"}):
        with pytest.raises(ProtocolError, match="bad_field"):
            field(bad, "id", int)


@given(st.text(max_size=200))
def test_decode_raises_only_protocol_errors(text: str) -> None:
    try:
        message = decode(PREFIX + text)
    except ProtocolError:
        return
    assert isinstance(message, dict) and isinstance(message["$ws"], str)


# -- the router, in memory ---------------------------------------------------------------


async def test_hello_gets_welcome_with_the_features_of_the_stack() -> None:
    async with Harness(HeartbeatMiddleware(echo_app(), interval=5, timeout=2)) as ws:
        await ws.next_text()  # the app's first message
        ws.send_json({"$ws": "hello", "v": 1})
        assert await ws.next_json() == {
            "$ws": "welcome",
            "v": 1,
            "features": {"heartbeat": {"interval": 5, "timeout": 2}},
        }
        ws.send_json({"$ws": "hello", "v": 1})
        assert (await ws.next_json())["code"] == "bad_message"


async def test_a_newer_client_is_answered_in_the_servers_version() -> None:
    async with Harness(HeartbeatMiddleware(echo_app())) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 7})
        assert (await ws.next_json())["v"] == 1
    async with Harness(HeartbeatMiddleware(echo_app())) as ws:
        await ws.next_text()
        ws.send_json({"$ws": "hello", "v": 0})
        assert (await ws.next_json())["code"] == "unsupported_version"
        ws.send_json({"$ws": "hello"})
        assert (await ws.next_json()) == {
            "$ws": "error",
            "code": "bad_field",
            "message": '"v" is required',
            "ref": "hello",
        }


async def test_errors_keep_the_connection_working_and_control_never_reaches_the_app() -> None:
    probe = Probe()
    async with Harness(HeartbeatMiddleware(echo_app(probe))) as ws:
        await ws.next_text()
        ws.send_text('{"$ws":"nope"}')
        unknown = await ws.next_json()
        assert unknown["code"] == "unknown_op" and unknown["ref"] == "nope" and "ping" in unknown["message"]
        ws.send_text('{"$ws":"ping"')
        assert (await ws.next_json())["code"] == "bad_json"
        ws.send_text('{"$ws": 5}')  # the prefix makes it a control message; a bad one
        assert (await ws.next_json())["code"] == "bad_message"
        ws.send_text('{"$ws": "ping", "id": 4}')  # json.dumps' default spacing is fine
        assert await ws.next_json() == {"$ws": "pong", "id": 4}
        ws.send_text("hello app")
        assert await ws.next_text() == "hello app"
        # Only frames starting exactly with the prefix are control messages.
        for text in ['{"type":"ping"}', '{ "$ws":"ping"}', '{"x":1,"$ws":"ping"}', "[1,2]", '{"$w":1}']:
            ws.send_text(text)
            assert await ws.next_text() == text
        ws.send_bytes(b'{"$ws":"ping"}')  # binary frames always belong to the app
        assert (await ws.next())["bytes"] == b'{"$ws":"ping"}'
    received = [m.get("text", m.get("bytes")) for m in probe.received if m["type"] == "websocket.receive"]
    assert not any(isinstance(t, str) and t.startswith(PREFIX) for t in received)


def test_max_control_length_is_documented() -> None:
    assert MAX_CONTROL_LENGTH == 65_536
    assert json.loads(encode("x", {"pad": "y" * 10}))["pad"] == "y" * 10
