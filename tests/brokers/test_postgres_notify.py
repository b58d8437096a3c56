"""The notification of a kept message (postgres:// with ?history=N), without a server: its
position in front, then the message inline when it fits, else a reference to the history row."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asgi_ws.brokers.postgres_notify import POSITION_ROOM, decode_notification, encode_inline, encode_kept

LIMIT = 7999


@given(st.text(min_size=1, max_size=256), st.binary(max_size=9000), st.booleans(), st.integers(0, 2**63 - 1))
def test_kept_notifications_round_trip_within_the_limit(channel: str, payload: bytes, utf8: bool, number: int) -> None:
    position = f"1764547200000-{number}"  # an epoch in ms, then any number a bigint holds
    text = f"p{position} " + encode_kept(channel, payload, LIMIT, utf8)
    assert len(text.encode("utf-8", "surrogatepass")) <= LIMIT and "\x00" not in text and (utf8 or text.isascii())
    inline = encode_inline(channel, payload, LIMIT - POSITION_ROOM, utf8) is not None
    assert decode_notification(text) == (channel, payload if inline else None, position)


def test_a_message_too_large_is_a_reference_by_name() -> None:
    assert decode_notification("p1-1 " + encode_kept("room", b"a" * LIMIT, LIMIT)) == ("room", None, "1-1")
    assert decode_notification("p1-2 " + encode_kept("room", b"small", LIMIT)) == ("room", b"small", "1-2")
