"""GraphQL subscriptions behind the asgi_ws middlewares: Strawberry on FastAPI, ``graphql-transport-ws``.

The WebSocket at ``/graphql`` passes OriginMiddleware, AuthMiddleware (a signed ticket in
``?ticket=``), SubprotocolMiddleware (``graphql-transport-ws`` only), then the session
middlewares (heartbeat, backpressure, rate limit). The resolvers read the identity
AuthMiddleware established in ``info.context["request"].scope["user"]``. A GraphQL client
never says the asgi_ws ``hello``, so it is a plain client: the heartbeat never pings it and
nothing but GraphQL reaches it (the protocol's own ``ping``/``pong`` keep it alive).

``sendMessage`` publishes to a room with Rooms; ``messages(room)`` streams the room with
``rooms.subscribe(room)``: every process on the same broker (``ASGI_WS_BROKER=redis://...``)
sees every message, whoever published it (a mutation, or any ``rooms.publish`` of the server).

Configuration (environment variables):
    ASGI_WS_BROKER         the Rooms broker (default ``memory://``: one process)
    ASGI_WS_SECRET_KEYS    comma-separated ticket signing keys, oldest first (default: a random key)
    ASGI_WS_ALLOW_ORIGINS  comma-separated allowed page origins (same-origin is always allowed)
    ASGI_WS_ALLOW_MISSING_ORIGIN  ``1``: accept clients that send no Origin (scripts, gql)
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import strawberry
from fastapi import FastAPI
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import Info

from asgi_ws import (
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    Rooms,
    SubprotocolMiddleware,
)
from asgi_ws.auth import SignedTicket

#: The one subprotocol spoken (graphql-ws's successor; the legacy ``graphql-ws`` is refused).
SUBPROTOCOL = GRAPHQL_TRANSPORT_WS_PROTOCOL


def identity_of(info: Info) -> str | None:
    """The user AuthMiddleware authenticated on this WebSocket (None over plain HTTP)."""
    user = info.context["request"].scope.get("user")
    return getattr(user, "identity", None) if getattr(user, "is_authenticated", False) else None


def rooms_of(info: Info) -> Rooms:
    rooms: Rooms = info.context["request"].app.state.rooms
    return rooms


@strawberry.type
class ChatMessage:
    room: str
    text: str
    author: str


@strawberry.type
class Query:
    @strawberry.field(description="Who this connection is authenticated as.")
    def me(self, info: Info) -> str | None:
        return identity_of(info)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Publish to a room: every subscriber in every process receives it.")
    async def send_message(self, info: Info, room: str, text: str) -> ChatMessage:
        author = identity_of(info)
        if author is None:
            raise PermissionError("sign in: send mutations over the WebSocket opened with ?ticket=")
        message = {"room": room, "text": text, "author": author}
        await rooms_of(info).publish(room, message)
        return ChatMessage(**message)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The messages of a room, from every process.")
    async def messages(self, info: Info, room: str) -> AsyncGenerator[ChatMessage, None]:
        # The room's one broker subscription in this process, shared with every resolver and
        # WebSocket member; a slow GraphQL client loses the oldest of 100 (then its socket's
        # BackpressureMiddleware policy applies). The block ends when the client completes the
        # subscription or goes away (Strawberry cancels the resolver): the room is left.
        scope = info.context["request"].scope  # asked of Rooms(authorize=...) if the app sets one
        async with rooms_of(info).subscribe(room, scope=scope, max_messages=100) as sub:
            async for message in sub:
                item = message.data
                if isinstance(item, dict) and isinstance(item.get("text"), str):  # a chat message
                    yield ChatMessage(room=room, text=item["text"], author=str(item.get("author", "")))

    @strawberry.subscription(description="The identity of this connection, then every `interval` seconds again.")
    async def whoami(self, info: Info, times: int = 1, interval: float = 0.0) -> AsyncGenerator[str | None, None]:
        for i in range(times):
            if i:
                await asyncio.sleep(interval)
            yield identity_of(info)

    @strawberry.subscription(description="0, 1, ... up to `upto` - 1.")
    async def count(self, upto: int) -> AsyncGenerator[int, None]:
        for i in range(upto):
            yield i


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def _list(name: str) -> list[str]:
    return [v for v in os.environ.get(name, "").split(",") if v]


def make_app(
    *,
    broker: str | None = None,
    secret_keys: list[str] | None = None,
    allow_origins: list[str] | None = None,
    allow_missing_origin: bool | None = None,
    heartbeat_interval: float = 20.0,
) -> FastAPI:
    """The application; arguments left None are read from the environment (module docstring)."""
    rooms = Rooms(broker or os.environ.get("ASGI_WS_BROKER", "memory://"), namespace="graphql")
    tickets = SignedTicket(secret_keys or _list("ASGI_WS_SECRET_KEYS") or [secrets.token_urlsafe(32)], max_age=60)
    if allow_missing_origin is None:
        allow_missing_origin = os.environ.get("ASGI_WS_ALLOW_MISSING_ORIGIN") == "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rooms:
            yield

    app = FastAPI(title="asgi_ws GraphQL example", lifespan=lifespan)
    app.state.rooms, app.state.tickets = rooms, tickets
    # OriginMiddleware decides which pages may connect (exact, wildcard, same-origin, missing):
    # Strawberry's own check (0.339+, allowed_origins) is left open rather than kept in step.
    graphql: GraphQLRouter[Any, Any] = GraphQLRouter(
        schema, subscription_protocols=[SUBPROTOCOL], allowed_origins=["*"]
    )
    app.include_router(graphql, prefix="/graphql")

    @app.post("/ticket")
    async def issue_ticket(name: str = "guest") -> dict[str, str]:
        """A 60-second ticket for ``/graphql?ticket=...``. A real app authenticates this request."""
        return {"ticket": tickets.issue(name[:64] or "guest")}

    # Added last = outermost: Origin, then the ticket, then the subprotocol; the session
    # middlewares run inside them, on accepted connections only.
    app.add_middleware(RateLimitMiddleware, rate=20, burst=40, policy="close", max_message_size=64 * 1024)
    app.add_middleware(BackpressureMiddleware, max_messages=500, policy="drop_oldest")
    app.add_middleware(HeartbeatMiddleware, interval=heartbeat_interval, timeout=heartbeat_interval)
    app.add_middleware(SubprotocolMiddleware, supported=[SUBPROTOCOL])
    app.add_middleware(AuthMiddleware, backend=tickets)
    app.add_middleware(
        OriginMiddleware,
        allow_same_origin=True,
        allow_origins=allow_origins if allow_origins is not None else _list("ASGI_WS_ALLOW_ORIGINS"),
        allow_missing=allow_missing_origin,
    )
    return app


app = make_app()
