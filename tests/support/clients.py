"""Real WebSocket clients (the ``websockets`` library) and helpers to read refusals."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Refusal:
    status: int
    body: str
    headers: dict[str, str]


async def open_or_refusal(url: str, **kwargs: Any) -> ClientConnection | Refusal:
    """Open a connection, or return the HTTP refusal the server answered the handshake with."""
    try:
        return await connect(url, open_timeout=10, **kwargs)
    except websockets.InvalidStatus as exc:
        response = exc.response
        return Refusal(response.status_code, bytes(response.body or b"").decode(), dict(response.headers))


async def refusal(url: str, **kwargs: Any) -> Refusal:
    result = await open_or_refusal(url, **kwargs)
    if not isinstance(result, Refusal):
        await result.close()
        raise AssertionError(f"expected the handshake to {url} to be refused, it was accepted")
    return result


@contextlib.asynccontextmanager
async def opened(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """Open a connection that must be accepted; fail with the refusal otherwise."""
    result = await open_or_refusal(url, **kwargs)
    if isinstance(result, Refusal):
        raise AssertionError(f"handshake refused: {result.status} {result.body}")
    async with result:
        yield result
