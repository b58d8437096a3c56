"""The asgi_ws control protocol: the one codec every middleware and client uses.

A control message is a WebSocket **text** frame holding a JSON object whose **first** key is
``"$ws"`` and whose value is the operation name::

    {"$ws":"ping","id":7}

Telling control messages from the application's own is one ``startswith`` on the frame
(:data:`PREFIX`, the six characters ``{"$ws"``; any JSON serializer that writes that key
first produces it, with or without spaces), so application messages are never parsed. Binary frames and
text frames not starting with the prefix belong to the application, untouched. The full
specification, for client authors, is ``docs/protocol.md``.

Whatever a client sends, :func:`decode` either returns an object that :func:`encode` can
write back as UTF-8, or raises :class:`ProtocolError`: lone surrogates (``"\\ud800"``),
non-finite numbers and nesting deeper than :data:`MAX_DEPTH` are refused there, once, so
no reply can echo a value the server cannot send. :func:`encode` writes ASCII only, so no
library-made control frame is unencodable, whatever the app or another node put in it.

A **batch** frame (:func:`encode_batch`, :func:`decode_batch`) carries several application
text messages in one control frame, for clients that asked for batches in ``hello``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from .exceptions import AsgiWsError

#: Every control message starts with exactly these characters.
PREFIX = '{"$ws"'
#: Key naming the operation; always the first key of the object.
OP_KEY = "$ws"
#: Highest protocol version this library speaks.
VERSION = 1
#: Every batch frame starts with exactly these characters (docs/protocol.md, "Batches").
BATCH_PREFIX = '{"$ws":"batch","m":['

#: Control messages longer than this many characters are refused without parsing.
MAX_CONTROL_LENGTH = 65_536
#: Deepest nesting of arrays and objects in a control message (its own object is level 1).
MAX_DEPTH = 32
#: Longest operation name, in characters.
MAX_OP_LENGTH = 64
#: An ``id`` is echoed in answers: null, a string of at most this many characters, or...
MAX_ID_LENGTH = 64
#: ...an integer of at most this magnitude (2**53 - 1: what every JSON parser, JavaScript's
#: included, reads exactly).
MAX_SAFE_INTEGER = 2**53 - 1

# ASCII out: \u escapes make every string writable as UTF-8, lone surrogates included (and
# it is no slower than ensure_ascii=False for control frames, see docs/protocol.md).
# allow_nan=False: a library frame is always JSON that every client parses.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_SURROGATE = re.compile("[\ud800-\udfff]")
# A \u escape of a surrogate in JSON text (a pair decodes to one character: then the check finds none).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Writing the parsed message back as UTF-8 is the quickest exact test for lone surrogates (C code).
_utf8_probe = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
# Batches keep their messages' characters (not \u escapes): the frame is as large as the messages
# plus their quotes, and what escaping JSON strings needs (quotes, backslashes, control characters).
_encode_texts = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode


class ProtocolError(AsgiWsError, ValueError):
    """Raised when a control message is malformed; answered with an ``error`` message.

    Args:
        code: machine-readable error code sent to the client (``bad_json``...).
        message: human-readable explanation.
        ref: the operation the error refers to, when known.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: Echoed to the client only when it is a valid operation name (else None).
        self.ref = ref if is_op_name(ref) else None


def is_control(text: str) -> bool:
    """Return True when the text frame ``text`` is a control message (by its prefix alone)."""
    return text.startswith(PREFIX)


def is_text(value: object) -> TypeGuard[str]:
    """True for a string without a lone surrogate: text that can be sent (as UTF-8)."""
    return isinstance(value, str) and not _has_surrogate(value)


def is_op_name(value: object) -> TypeGuard[str]:
    """True for a valid operation name: a string of 1 to :data:`MAX_OP_LENGTH` characters, no lone surrogate."""
    return is_text(value) and 0 < len(value) <= MAX_OP_LENGTH


def encode(op: str, fields: Mapping[str, Any] | None = None) -> str:
    """Return the text frame of control message ``op`` with ``fields`` (JSON-serialisable).

    The frame is ASCII (other characters are ``\\u`` escapes), so it can always be sent.

    Raises:
        ValueError: a float is NaN or infinite (not JSON).
        TypeError: a value is not JSON-serialisable.
    """
    return _encoder.encode({OP_KEY: op, **fields} if fields else {OP_KEY: op})


def error(code: str, message: str, ref: str | None = None) -> str:
    """Return the text frame of an ``error`` control message (``ref`` only when it is a valid operation name)."""
    fields: dict[str, Any] = {"code": code, "message": message}
    if ref is not None and is_op_name(ref):
        fields["ref"] = ref
    return encode("error", fields)


def encode_batch(texts: list[str]) -> str:
    """Return the batch frame carrying the text messages ``texts``, in order: ``{"$ws":"batch","m":[...]}``.

    Each message is a JSON string of exactly its characters; its receiver gets them back,
    message by message, with :func:`decode_batch` (or ``JSON.parse``).
    """
    return '{"$ws":"batch","m":' + _encode_texts(texts) + "}"


def decode_batch(message: Mapping[str, Any]) -> list[str] | None:
    """The text messages of a decoded batch frame (``message["$ws"] == "batch"``), in order;
    None when it does not hold a list of strings."""
    texts = message.get("m")
    if type(texts) is not list or not all(type(text) is str for text in texts):
        return None
    return texts


def decode(text: str, *, max_length: int | None = MAX_CONTROL_LENGTH) -> dict[str, Any]:
    """Parse a control message; return its object (``obj["$ws"]`` is the operation).

    ``max_length`` bounds what a server accepts from clients; a client reading the server's
    messages (a presence list can be long) passes None and relies on its frame size limit.

    What it returns can always be written back (:func:`encode`) and sent: every string is
    valid Unicode, every number finite, the nesting at most :data:`MAX_DEPTH`, and an
    ``id`` member is one that answers may echo.

    Raises:
        ProtocolError: for anything that is not a well-formed control message: too long
            (``too_large``), not JSON, or JSON holding a lone surrogate or a non-finite
            number (``bad_json``), nested too deep (``too_deep``), not an object or an
            operation that is not a short string (``bad_message``), an ``id`` that cannot
            be echoed (``bad_field``).
    """
    if max_length is not None and len(text) > max_length:
        raise ProtocolError("too_large", f"control messages are limited to {max_length} characters")
    try:
        obj = _decoder.decode(text)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("too_deep", _TOO_DEEP) from None
    except ValueError as exc:
        raise ProtocolError("bad_json", f"control message is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "control message must be a JSON object")
    # The parser refused non-finite numbers. The rest is looked at only when the text could
    # hold it: more brackets than MAX_DEPTH for deep nesting; a surrogate written as such
    # (never in a frame off the wire: it is not UTF-8) or as a \uD800-\uDFFF escape.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(obj):
        raise ProtocolError("too_deep", _TOO_DEEP, obj.get(OP_KEY))  # ref: only when a valid name
    if (not text.isascii() and _SURROGATE.search(text)) or (
        "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _is_unicode(obj)
    ):
        raise ProtocolError("bad_json", _SURROGATE_FOUND, obj.get(OP_KEY))
    op = obj.get(OP_KEY)
    if not isinstance(op, str) or not 0 < len(op) <= MAX_OP_LENGTH:  # (a surrogate in it was refused above)
        raise ProtocolError("bad_message", 'the "$ws" member must name the operation')
    ident = obj.get("id")
    if ident is not None and not _echoable_id(ident):
        raise ProtocolError(
            "bad_field",
            f'"id" must be null, an integer within +-(2**53 - 1) or a string of at most {MAX_ID_LENGTH} characters',
            op,
        )
    return obj


def check_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise unless ``value`` is JSON that can be sent to any client.

    That is: dicts with string keys, lists (tuples), strings without lone surrogates,
    finite numbers, booleans and None, nested at most ``max_depth`` deep. The walk is
    iterative (no recursion, whatever the depth) and stops at the first problem.

    Raises:
        ProtocolError: ``bad_json`` (a ValueError) or ``too_deep``, saying what is wrong.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                raise ProtocolError("bad_json", _SURROGATE_FOUND)
        elif isinstance(item, dict):
            depth += 1
            if depth > max_depth:
                raise ProtocolError("too_deep", f"arrays and objects may be nested {max_depth} deep at most")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ProtocolError("bad_json", "object keys must be strings")
                if _has_surrogate(key):
                    raise ProtocolError("bad_json", _SURROGATE_FOUND)
                push((child, depth))
        elif isinstance(item, (list, tuple)):
            depth += 1
            if depth > max_depth:
                raise ProtocolError("too_deep", f"arrays and objects may be nested {max_depth} deep at most")
            for child in item:
                push((child, depth))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ProtocolError("bad_json", _NOT_FINITE)
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise ProtocolError("bad_json", f"a {type(item).__name__} is not a JSON value")


_TOO_DEEP = f"arrays and objects may be nested {MAX_DEPTH} deep at most"
_SURROGATE_FOUND = "a string holds a lone surrogate (U+D800 to U+DFFF not in a pair): it is not Unicode text"
_NOT_FINITE = "numbers must be finite: no NaN, Infinity, or a number beyond the range of a double"


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _too_deep(obj: Any) -> bool:
    """True when arrays and objects nest more than MAX_DEPTH deep in the parsed ``obj``.

    One level at a time, no recursion; the parser makes only exact dicts and lists.
    """
    level = [obj]
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        add = deeper.append
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    add(child)
        if not deeper:
            return False
        level = deeper
    return True


def _is_unicode(obj: Any) -> bool:
    """True when no string of ``obj`` (a parsed message, nesting checked) holds a lone surrogate."""
    try:
        _utf8_probe(obj).encode()
    except UnicodeEncodeError:
        return False
    return True


def _finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):  # 1e999
        raise ProtocolError("bad_json", _NOT_FINITE)
    return number


def _no_constant(literal: str) -> Any:  # NaN, Infinity, -Infinity: Python's parser takes them, JSON has none
    raise ProtocolError("bad_json", _NOT_FINITE)


def _echoable_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


# The C scanner calls these hooks only for float literals and NaN/Infinity: integers, strings
# and a ping pay nothing for them.
_decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """Return ``obj[name]`` checked against ``kind``; raise ``bad_field`` when it is missing or wrong.

    ``bool`` never passes for ``int`` (JSON ``true`` is not a number).
    """
    value = obj.get(name)
    if value is None:
        if required:
            raise ProtocolError("bad_field", f'"{name}" is required', obj.get(OP_KEY))
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ProtocolError("bad_field", f'"{name}" has the wrong type', obj.get(OP_KEY))
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


__all__ = [
    "BATCH_PREFIX",
    "MAX_CONTROL_LENGTH",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_OP_LENGTH",
    "MAX_SAFE_INTEGER",
    "OP_KEY",
    "PREFIX",
    "VERSION",
    "ProtocolError",
    "check_value",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "error",
    "field",
    "is_control",
    "is_op_name",
    "is_text",
]
