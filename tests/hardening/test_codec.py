"""The control-protocol codec takes any text: a sendable object or a documented ProtocolError, nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asgi_ws.protocol import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    PREFIX,
    ProtocolError,
    check_value,
    decode,
    encode,
    error,
)
from tests.hardening.strategies import CHARS, TEXT, VALUES, control_objects, control_texts, dumps, nested

#: The error codes docs/protocol.md §4 documents for a malformed control message.
DECODE_CODES = {"too_large", "bad_json", "too_deep", "bad_message", "bad_field"}


def assert_sendable(message: dict[str, Any]) -> None:
    """What decode returned can be written back, sent as UTF-8, and read back the same."""
    fields = {k: v for k, v in message.items() if k != "$ws"}
    frame = encode(message["$ws"], fields)
    frame.encode("utf-8")  # raises for an unencodable reply
    assert frame.isascii()
    assert decode(frame) == message


def assert_decodes_or_refuses(text: str) -> None:
    try:
        message = decode(text)
    except ProtocolError as exc:
        assert exc.code in DECODE_CODES, exc
        assert exc.ref is None or (isinstance(exc.ref, str) and 0 < len(exc.ref) <= 64)
        error(exc.code, exc.message, exc.ref).encode("utf-8")  # the answer is always sendable
        return
    assert_sendable(message)


@settings(max_examples=300)
@given(st.text(CHARS, max_size=200))
def test_any_text_after_the_prefix(text: str) -> None:
    assert_decodes_or_refuses(PREFIX + text)


@settings(max_examples=500)
@given(control_texts())
def test_any_control_message_a_client_can_write(text: str) -> None:
    assert_decodes_or_refuses(text)


@settings(max_examples=300)
@given(control_objects(), st.booleans())
@example({"$ws": "ping", "id": "\ud800"}, True)
@example({"$ws": "\udfff", "id": 1}, False)
@example({"$ws": "ping", "\ud800": 1}, True)
@example({"$ws": "ping", "id": math.nan}, True)
@example({"$ws": "ping", "x": [math.inf]}, True)
@example({"$ws": "ping", "id": 2**53}, True)
@example({"$ws": "ping", "id": "x" * 65}, True)
@example({"$ws": "publish", "channel": "c", "data": nested(MAX_DEPTH)}, True)
def test_any_object_serialised_by_a_careless_client(obj: dict[str, Any], ascii_only: bool) -> None:
    assert_decodes_or_refuses(dumps(obj, ascii_only=ascii_only))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"$ws":"ping","id":"\\ud800"}', "bad_json"),  # the regression of issue 8
        ('{"$ws":"ping","id":"a\\udc00b"}', "bad_json"),
        ('{"$ws":"ping","id":"\\ud83d\\ude00"}', None),  # a pair is a character: fine
        ('{"$ws":"ping","\\ud800":1}', "bad_json"),  # keys too
        ('{"$ws":"\\ud800"}', "bad_json"),  # the operation: never echoed in "ref"
        ('{"$ws":"subscribe","meta":{"name":"\\ud800"},"channel":"c"}', "bad_json"),
        ('{"$ws":"ping","x":NaN}', "bad_json"),
        ('{"$ws":"ping","x":-Infinity}', "bad_json"),
        ('{"$ws":"ping","x":1e999}', "bad_json"),
        ('{"$ws":"ping","x":-1e400}', "bad_json"),
        ('{"$ws":"ping","x":1e308}', None),
        ('{"$ws":"ping","x":' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}", None),
        ('{"$ws":"ping","x":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", "too_deep"),
        ('{"$ws":"ping","x":' + '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH + "}", "too_deep"),
        ('{"$ws":"ping","x":"' + "[{" * 40 + '"}', None),  # brackets in a string are not nesting
        ('{"$ws":"ping","id":' + str(MAX_SAFE_INTEGER) + "}", None),
        ('{"$ws":"ping","id":-' + str(MAX_SAFE_INTEGER) + "}", None),
        ('{"$ws":"ping","id":' + str(MAX_SAFE_INTEGER + 1) + "}", "bad_field"),
        ('{"$ws":"ping","id":1.5}', "bad_field"),
        ('{"$ws":"ping","id":true}', "bad_field"),
        ('{"$ws":"ping","id":{"a":1}}', "bad_field"),
        ('{"$ws":"ping","id":"' + "x" * 64 + '"}', None),
        ('{"$ws":"ping","id":"' + "x" * 65 + '"}', "bad_field"),
        ('{"$ws":"ping","id":null}', None),
        ('{"$ws":"ping","n":' + "9" * 4000 + "}", None),  # big, but writable back
    ],
)
def test_decode_decisions(text: str, code: str | None) -> None:
    if code is None:
        assert_sendable(decode(text))
        return
    with pytest.raises(ProtocolError) as info:
        decode(text)
    assert info.value.code == code, info.value


def test_an_invalid_id_names_the_operation_and_an_invalid_operation_is_never_echoed() -> None:
    with pytest.raises(ProtocolError) as info:
        decode('{"$ws":"ping","id":[1]}')
    assert info.value.ref == "ping"
    for ref in ("\ud800", "x" * 65, "", 5, None):
        assert ProtocolError("bad_field", "m", ref).ref is None  # type: ignore[arg-type]
        assert "ref" not in json.loads(error("bad_field", "m", ref))  # type: ignore[arg-type]


def test_encode_is_ascii_and_refuses_what_no_client_could_parse() -> None:
    # Whatever the app or another node put in a frame (a lone surrogate), it can be sent.
    frame = encode("presence", {"meta": {"name": "\ud800é😀"}})
    assert frame.isascii() and json.loads(frame)["meta"]["name"] == "\ud800é😀"
    with pytest.raises(ValueError):
        encode("presence", {"x": math.nan})


@settings(max_examples=300)
@given(VALUES)
def test_check_value_agrees_with_a_strict_encoder(value: Any) -> None:
    try:
        check_value(value)
    except ProtocolError as exc:
        assert exc.code in ("bad_json", "too_deep")
        return
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


def test_check_value_walks_without_recursion() -> None:
    deep = nested(100_000)
    with pytest.raises(ProtocolError, match="too_deep"):
        check_value(deep)
    check_value(nested(MAX_DEPTH))
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ProtocolError, match="too_deep"):
        check_value(circular)
    for bad in ({1: "int key"}, {"set": {1}}, b"bytes", object()):
        with pytest.raises(ProtocolError, match="bad_json"):
            check_value(bad)


@given(TEXT)
def test_text_values_are_refused_exactly_when_they_hold_a_lone_surrogate(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ProtocolError, match="bad_json"):
            check_value(text)
    else:
        check_value(text)
