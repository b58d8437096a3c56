"""permessage-deflate (negotiated by uvicorn, not by middleware): size limits apply to the
inflated size, in both orders of uvicorn's ``ws_max_size`` and RateLimitMiddleware's
``max_message_size``; a small frame inflating far past the limits is refused without being
inflated whole (websockets implementations; wsproto inflates a frame whole: pinned here, said in
docs/compression.md); ``asgi-ws serve --compression`` negotiates it, and is off by default."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tracemalloc
import zlib
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asgi_ws import RateLimitMiddleware
from tests.support.procs import asgi_ws_serve
from tests.support.server import serve
from tests.test_binary import EchoProbe

KIB, MIB = 1 << 10, 1 << 20
WAIT = 20.0


def deflated(size: int) -> bytes:
    """A permessage-deflate payload (RFC 7692: raw deflate, the final 00 00 ff ff removed) of
    ``size`` zero bytes: about size / 1000 bytes on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


async def close_code_after(url: str, payload: bytes) -> tuple[int | None, str]:
    """Send ``payload`` (compressed by the client) and return the close the server answered."""
    async with connect(url, compression="deflate", max_size=None) as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.send(payload)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                while True:
                    await ws.recv()
    assert ws.close_code is not None, f"the server did not close within {WAIT} s"
    return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize(
    ("ws_max_size", "max_message_size", "acts"),
    [(1 * MIB, 64 * KIB, "RateLimitMiddleware"), (64 * KIB, 1 * MIB, "uvicorn")],
    ids=["max_message_size first", "ws_max_size first"],
)
async def test_limits_apply_to_the_inflated_size(
    ws_impl: str, ws_max_size: int, max_message_size: int, acts: str
) -> None:
    """512 KiB of zeros is ~500 bytes on the wire: the smaller limit closes 1009, the app never sees it."""
    payload = bytes(512 * KIB)
    assert len(deflated(len(payload))) < 1 * KIB  # what travels is far below both limits
    probe = EchoProbe()
    app = RateLimitMiddleware(probe, max_message_size=max_message_size)
    async with serve(app, ws=ws_impl, ws_per_message_deflate=True, ws_max_size=ws_max_size) as server:
        code, reason = await close_code_after(server.ws_url("/"), payload)
        assert code == 1009, (code, reason)
        if acts == "RateLimitMiddleware":
            assert reason == "message too big"
            assert app.stats.oversized == 1
        else:
            assert reason != "message too big", "uvicorn's ws_max_size should have acted first"
            assert app.stats.oversized == 0
        # Under the limits, compressed messages pass as usual.
        async with connect(server.ws_url("/"), compression="deflate") as ws:
            await ws.send(bytes(4 * KIB))
            assert await ws.recv() == bytes(4 * KIB)
    assert [m.get("bytes") for m in probe.received] == [bytes(4 * KIB)]


async def send_raw_deflated_frame(port: int, compressed: bytes) -> tuple[int, bytes]:
    """Handshake by hand offering permessage-deflate, send one binary frame with RSV1 set whose
    payload is ``compressed``, and return the server's close code and reason."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode()
        )
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
            length = len(compressed)
            header = bytes([0x80 | 0x40 | 0x2])  # FIN, RSV1 (compressed), binary
            if length < 126:
                header += bytes([0x80 | length])
            elif length < 1 << 16:
                header += bytes([0x80 | 126]) + length.to_bytes(2, "big")
            else:
                header += bytes([0x80 | 127]) + length.to_bytes(8, "big")
            writer.write(header + b"\x00\x00\x00\x00" + compressed)  # a zero masking key: the payload as is
            while True:  # the server's frames until its close
                first, second = await reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                elif size == 127:
                    size = int.from_bytes(await reader.readexactly(8), "big")
                body = await reader.readexactly(size)
                if first & 0x0F == 0x8:
                    return int.from_bytes(body[:2], "big"), body[2:]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_a_deflate_bomb_is_refused_without_inflating_it_whole(ws_impl: str) -> None:
    """One ~65 KB frame that inflates to 64 MiB, against ws_max_size = 1 MiB and
    max_message_size = 64 KiB: closed 1009 by uvicorn. The websockets implementations inflate
    at most ws_max_size (the peak of Python allocations meanwhile stays a few MiB); wsproto
    inflates the whole frame first (pinned: if this changes, update docs/compression.md)."""
    inflated = 64 * MIB
    compressed = deflated(inflated)
    assert len(compressed) < 100 * KIB
    probe = EchoProbe()
    app = RateLimitMiddleware(probe, max_message_size=64 * KIB)
    async with serve(app, ws=ws_impl, ws_per_message_deflate=True, ws_max_size=1 * MIB) as server:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            code, reason = await send_raw_deflated_frame(server.port, compressed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert code == 1009, (code, reason)
    assert probe.received == []
    if ws_impl == "wsproto":
        assert peak > inflated, f"wsproto no longer inflates a frame whole (peak {peak / MIB:.1f} MiB): update the docs"
    else:
        assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB allocated while refusing a 64 MiB bomb under {ws_impl}"


@pytest.mark.parametrize("flag", [[], ["--compression"]], ids=["default", "--compression"])
async def test_asgi_ws_serve_negotiates_compression_only_when_asked(flag: list[str]) -> None:
    """Off by default (uvicorn's own default is on). With --compression, uvicorn's ws_max_size is
    the message limit: a small frame inflating past it is refused before it is inflated whole."""
    with asgi_ws_serve("--allow-missing-origin", "--no-demo", "--max-message-size", "4096", *flag) as server:
        async with connect(server.ws_url("/ws"), compression="deflate") as ws:
            extensions: Any = ws.response.headers.get("Sec-WebSocket-Extensions")
        if flag:
            code, reason = await close_code_after(server.ws_url("/ws"), bytes(64 * KIB))
            assert code == 1009, (code, reason)
    if flag:
        assert extensions is not None and extensions.startswith("permessage-deflate"), extensions
    else:
        assert extensions is None, f"compression negotiated without --compression: {extensions}"
