"""Hypothesis strategies for hostile input: JSON values and frames a client (or a peer) may send.

``st.text()`` never draws a surrogate (Hypothesis leaves the ``Cs`` category out by default),
so the strategies here add lone surrogates on purpose, with a fair chance, next to the
characters that matter to a JSON parser.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: Every operation a client of ``asgi-ws serve`` may name, and some it may not.
OPS = ("hello", "ping", "pong", "subscribe", "unsubscribe", "publish", "presence", "ack", "resume", "welcome", "nope")
#: Members the server reads, for some operation.
FIELDS = ("id", "v", "channel", "data", "meta", "presence", "seq", "to")
#: The channels the bystander of the end-to-end tests subscribes to.
CHANNELS = ("c0", "c1")

SURROGATES = st.characters(categories=["Cs"])
CHARS = st.one_of(
    st.characters(),
    SURROGATES,
    st.sampled_from('"\\{}[]:,u0123456789abcdefABCDEF$wsé😀\x00\n'),
)
TEXT = st.text(CHARS, max_size=24)
KEYS = st.one_of(st.sampled_from(FIELDS), TEXT)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53 - 1, 2**53, -(2**53), 10**400, -(10**400)]),
    st.floats(),  # nan and infinities included
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, st.sampled_from(CHANNELS))
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = 0) -> Any:
    """A value ``depth`` containers deep (lists and objects alternating)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = st.integers(min_value=0, max_value=40).map(nested)
#: Plausible values of the known members, so that many messages reach the handlers.
PLAUSIBLE = {
    "id": st.one_of(st.integers(-3, 3), st.text(max_size=3)),
    "v": st.integers(-1, 3),
    "channel": st.sampled_from(CHANNELS),
    "data": st.one_of(LEAVES, st.dictionaries(st.text(max_size=3), LEAVES, max_size=2)),
    "meta": st.dictionaries(st.sampled_from(["name", "\ud800", "k"]), LEAVES, max_size=2),
    "presence": st.booleans(),
    "seq": st.integers(-1, 5),
    "to": st.text(max_size=3),
}


@st.composite
def control_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A control message object: a known (mostly) or arbitrary operation, and members of
    plausible or arbitrary values, of the right and the wrong types for every operation."""
    op = draw(st.sampled_from(OPS)) if draw(st.integers(0, 9)) else draw(st.one_of(TEXT, LEAVES))
    fields: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        choice = draw(st.integers(0, 5))
        fields[name] = draw(PLAUSIBLE[name] if choice < 3 else DEEP if choice == 5 else VALUES)
    fields.update(draw(st.dictionaries(TEXT, VALUES, max_size=2)))
    fields.pop("$ws", None)
    return {"$ws": op, **fields}


def dumps(obj: Any, *, ascii_only: bool) -> str:
    """JSON as a careless client writes it: NaN and Infinity allowed, surrogates escaped or raw."""
    return json.dumps(obj, ensure_ascii=ascii_only, allow_nan=True, separators=(",", ":"))


@st.composite
def control_texts(draw: st.DrawFn, *, wire: bool = False) -> str:
    """The text of a frame starting like a control message.

    ``wire=True`` keeps to what a text frame can carry (valid UTF-8: lone surrogates only as
    ``\\u`` escapes); otherwise raw surrogates may appear too.
    """
    kind = draw(st.sampled_from(["object", "object", "object", "mangled", "junk"]))
    if kind == "junk":
        text = '{"$ws"' + draw(TEXT)
    else:
        text = dumps(draw(control_objects()), ascii_only=wire or draw(st.booleans()))
        if kind == "mangled":  # cut it, or splice something into it
            cut = draw(st.integers(min_value=0, max_value=len(text)))
            text = text[:cut] + draw(st.sampled_from(["", "NaN", "1e999", "-Infinity", '"\\ud800"', "[" * 40]))
            if not text.startswith('{"$ws"'):
                text = '{"$ws"' + text
    if wire:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
