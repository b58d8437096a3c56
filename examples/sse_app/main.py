"""Server-Sent Events fed by a room, for clients that cannot open a WebSocket.

- ``GET /rooms/{room}/events``: the room as ``text/event-stream`` (the browser's
  ``EventSource``, ``curl -N``): every message published to the room, by anyone, in any
  process on the broker. Each event's ``data`` is the published value as JSON (a string is
  a JSON string), binary messages come as ``event: binary`` with base64 ``data``.
- ``POST /rooms/{room}/messages``: publish the JSON body to the room (its WebSocket members,
  SSE streams and other subscriptions, in every process).
- ``GET /``: a page that follows a room with ``EventSource`` and publishes with ``fetch``.

With a broker that keeps history (the default here, ``memory://?history=1000``; or
``redis://...?history=N``, ``postgres://``, ``nats://``), each event's ``id`` is the message's
position in the room, and the stream opens with the room's position at that moment. A client
that reconnects sends the last id it saw as ``Last-Event-ID`` (``EventSource`` does so by
itself) or ``?after=`` (a page reloaded): it gets what it missed, then the live messages, with
nothing twice. When the history no longer reaches back that far the stream starts with a
``gap`` event (the client reloads its state), then goes on live. A client too slow to read
``max_buffered`` messages is ended (``policy="close"``): it reconnects and resumes the same way.

Configuration (environment variables):
    ASGI_WS_BROKER   the Rooms broker (default ``memory://?history=1000``: one process)
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from asgi_ws import PermissionDenied, Rooms
from asgi_ws.rooms import HistoryGap, RoomMessage, Subscription, SubscriptionOverflow
from asgi_ws.rooms.subscription import check_position
from asgi_ws.types import Receive, Scope, Send

Authorize = Callable[[Scope, str, str], "bool | str | Awaitable[bool | str]"]
#: Milliseconds a disconnected EventSource waits before it reconnects.
RETRY_MS = 1000


def after_of(last_event_id: str | None, after: str | None) -> str | None:
    """Where a client resumes: its ``Last-Event-ID`` header, else its ``?after=``; None: live.

    Raises:
        ValueError: the one given is not a room position (this server never sends such an id).
    """
    value = last_event_id if last_event_id else after
    return check_position(value) if value else None


def event(data: str, *, id: str | None = None, kind: str | None = None) -> str:
    """One event of a ``text/event-stream``; ``data`` holds no line break (JSON, base64)."""
    head = (f"event: {kind}\n" if kind else "") + (f"id: {id}\n" if id is not None else "")
    return f"{head}data: {data}\n\n"


def event_of(message: RoomMessage) -> str:
    """A room message as an event: its value as compact JSON, bytes as ``binary`` base64."""
    if isinstance(message.data, bytes):
        return event(base64.b64encode(message.data).decode(), id=message.position, kind="binary")
    return event(json.dumps(message.data, separators=(",", ":"), ensure_ascii=False), id=message.position)


async def events(sub: Subscription, *, gap: str | None, keepalive: float, max_events: int | None) -> AsyncIterator[str]:
    """The stream of one subscription: where it starts (the reconnection delay, and the room's
    position as the id to resume from), a ``gap`` if the history did not reach back, the room's
    messages, and a comment every ``keepalive`` idle seconds (proxies close silent streams)."""
    yield f"retry: {RETRY_MS}\n" + (f"id: {sub.position}\n" if sub.position is not None else "") + "\n"
    if gap is not None:
        yield event(json.dumps({"after": gap}), kind="gap")
    sent = 0
    while max_events is None or sent < max_events:
        try:
            message = await asyncio.wait_for(anext(sub), keepalive)
        except asyncio.TimeoutError:
            yield ": keepalive\n\n"
            continue
        except (StopAsyncIteration, SubscriptionOverflow):
            return  # the server stops, or the client read too slowly: it reconnects and resumes
        yield event_of(message)
        sent += 1


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that leaves its subscription however it ends: the events
    sent, the client gone (Starlette cancels the stream), or the response never started."""

    def __init__(self, sub: Subscription, content: AsyncIterator[str]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.subscription = sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.subscription.__aexit__(None, None, None)


def make_app(
    *,
    broker: str | None = None,
    authorize: Authorize | None = None,
    max_buffered: int = 1000,
    keepalive: float = 15.0,
    max_events: int | None = None,
) -> FastAPI:
    """The application.

    Args:
        broker: the Rooms broker URL (default: ``ASGI_WS_BROKER``, else ``memory://?history=1000``).
        authorize: ``authorize(scope, room, action)`` (``"subscribe"``/``"publish"``), as Rooms takes it.
        max_buffered: messages a stream may fall behind before it is ended (and resumed).
        keepalive: idle seconds between keep-alive comments.
        max_events: events after which a stream ends (the client resumes on a fresh one: what
            proxies or load balancers that cap a response's life need); None: no limit.
    """
    rooms = Rooms(
        broker or os.environ.get("ASGI_WS_BROKER", "memory://?history=1000"), namespace="sse", authorize=authorize
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rooms:
            yield

    app = FastAPI(title="asgi_ws Server-Sent Events example", lifespan=lifespan)
    app.state.rooms = rooms

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return (Path(__file__).parent / "index.html").read_text()

    @app.get("/rooms/{room}/events", response_model=None)
    async def stream(request: Request, room: str) -> Response:
        try:
            after = after_of(request.headers.get("last-event-id"), request.query_params.get("after"))
            if not rooms.history:
                after = None  # nothing to resume from: live
            sub = rooms.subscribe(room, after=after, scope=request.scope, max_messages=max_buffered, policy="close")
        except ValueError as exc:  # a room name or a position no client of ours sends
            return PlainTextResponse(str(exc), status_code=400)
        gap = None
        try:  # entered before the response starts: a refusal is a status, not a broken stream
            await sub.__aenter__()
        except PermissionDenied as exc:
            return PlainTextResponse(exc.reason, status_code=403)
        except HistoryGap:
            gap, sub = after, rooms.subscribe(room, scope=request.scope, max_messages=max_buffered, policy="close")
            await sub.__aenter__()
        return EventStream(sub, events(sub, gap=gap, keepalive=keepalive, max_events=max_events))

    @app.post("/rooms/{room}/messages")
    async def publish(request: Request, room: str) -> Response:
        try:
            data: Any = await request.json()
        except ValueError:
            return PlainTextResponse("the body must be JSON", status_code=400)
        verdict = authorize(request.scope, room, "publish") if authorize is not None else True
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is not True:
            return PlainTextResponse(verdict if isinstance(verdict, str) else "forbidden", status_code=403)
        try:
            delivered = await rooms.publish(room, data)
        except ValueError as exc:  # a room name, or a value clients cannot be sent
            return PlainTextResponse(str(exc), status_code=400)
        return JSONResponse({"delivered": delivered})

    return app


app = make_app()
