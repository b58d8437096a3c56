"""Real WebSocket clients (the ``websockets`` library) and helpers to read refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
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


async def recv_json_until(
    ws: ClientConnection, accept: Callable[[Any], bool], *, timeout: float = 10.0, what: str
) -> Any:
    """Read JSON frames until one satisfies ``accept``; fail after ``timeout`` seconds naming ``what``.

    Every wait on the network in the tests is bounded this way: a lost message fails the
    test with what did not arrive instead of hanging it until pytest's timeout.
    """
    seen: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await ws.recv())
                if accept(message):
                    return message
                seen.append(message)
    except TimeoutError:
        raise AssertionError(f"{what} did not arrive within {timeout} s; received meanwhile: {seen[-5:]}") from None
