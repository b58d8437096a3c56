"""Chunking a payload over NATS's max_payload, without a server: split() then Reassembler
gives the payload back, whatever its size, and every chunk leaves room for its header."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asgi_ws.brokers.nats_chunks import CHUNK_HEADER, HEADER_ROOM, Reassembler, split


@given(st.binary(min_size=1, max_size=5000), st.integers(HEADER_ROOM + 1, HEADER_ROOM + 700))
def test_split_then_reassemble_gives_the_payload_back(payload: bytes, max_payload: int) -> None:
    chunks = list(split(payload, max_payload, "m1"))
    assert all(len(chunk) <= max_payload - HEADER_ROOM for chunk, _ in chunks)
    joiner = Reassembler(limit=len(payload))
    results = [joiner.add(headers[CHUNK_HEADER], chunk) for chunk, headers in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1) and results[-1] == payload and joiner.dropped == 0


def test_a_lost_chunk_drops_the_message_whole() -> None:
    chunks = list(split(b"abcdefgh" * 100, HEADER_ROOM + 100, "m2"))
    joiner = Reassembler(limit=10_000)
    results = [joiner.add(headers[CHUNK_HEADER], chunk) for i, (chunk, headers) in enumerate(chunks) if i != 2]
    assert results == [None] * (len(chunks) - 1) and joiner.dropped == 1
