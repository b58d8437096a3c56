"""PubSubApp: a mountable ASGI app serving multiplexed subscriptions over one WebSocket.

A client subscribes to, unsubscribes from and publishes to any number of channels with
control messages (``{"$ws":"subscribe","channel":"stocks"}``, see ``docs/protocol.md``); what is
published on a channel reaches its subscribers as ``{"channel": "stocks", "data": ...}``, in
every worker process (Rooms on a broker). No user code is needed beyond configuration; it
runs behind the handshake middlewares like any endpoint, and is what ``asgi-ws serve`` serves.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ._scope import namespace
from .connection import Connection, attach_session
from .drain import DRAIN_TIMEOUT, drain
from .exceptions import ConfigurationError, PermissionDenied
from .protocol import ProtocolError, field
from .resume.handshake import ROOM_CHECK
from .rooms import Rooms
from .rooms.envelope import payload_of
from .rooms.members import MAX_ROOM_LENGTH
from .rooms.presence import check_meta
from .types import Receive, Scope, Send

logger = logging.getLogger("asgi_ws.pubsub")

Authorize = Callable[[Scope, str, str], "bool | str | Awaitable[bool | str]"]


class PubSubApp:
    """Serve the multiplexed pub/sub protocol over :class:`~asgi_ws.rooms.Rooms`.

    Args:
        rooms: the Rooms to use (default: a new ``Rooms("memory://")``).
        authorize: optional ``authorize(scope, channel, action) -> True | False | reason``
            (sync or async), ``action`` being ``"subscribe"`` or ``"publish"``, checked for every
            client request in addition to ``rooms.authorize``. Only ``True`` allows. A
            ``presence`` query about a channel the client is not subscribed to is asked as
            ``"subscribe"``: who is in a channel is what subscribing to it shows. Behind
            ResumeMiddleware, a resumed session gets back only the channels it says True for,
            asked with the new connection's scope.
        max_subscriptions: channels one connection may be subscribed to at once.
        max_publish_bytes: largest ``data`` a client may publish, JSON-encoded, in UTF-8 bytes.
        allow_publish: False makes the endpoint subscribe-only for clients (the server
            publishes through ``rooms.publish``).
        echo: deliver a client's publishes to itself too.
        drain_timeout: seconds the lifespan shutdown gives the process's connections to drain
            (:func:`asgi_ws.drain.drain`) before the rooms close.

    Without an asgi_ws session middleware around it, the app adds the connection shell
    itself (control protocol, bounded outbound queue from ``rooms.default_limits``); put
    HeartbeatMiddleware, BackpressureMiddleware and RateLimitMiddleware around it to tune
    those, and the handshake middlewares outside them.

    As the top-level application it answers the ``lifespan`` protocol (starts the rooms, and
    drains and closes them at shutdown). Routed or mounted inside a framework it gets no
    lifespan events: give the framework :meth:`lifespan` (``FastAPI(lifespan=pubsub.lifespan)``).
    """

    def __init__(
        self,
        rooms: Rooms | None = None,
        *,
        authorize: Authorize | None = None,
        max_subscriptions: int = 100,
        max_publish_bytes: int = 65_536,
        allow_publish: bool = True,
        echo: bool = False,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        if max_subscriptions < 1 or max_publish_bytes < 1:
            raise ConfigurationError("max_subscriptions and max_publish_bytes must be positive")
        self.rooms = rooms if rooms is not None else Rooms()
        self.authorize = authorize
        self.max_subscriptions = max_subscriptions
        self.max_publish_bytes = max_publish_bytes
        self.allow_publish = allow_publish
        self.echo = echo
        self.drain_timeout = drain_timeout
        self._features = {
            "pubsub": {
                "max_subscriptions": max_subscriptions,
                "max_publish_bytes": max_publish_bytes,
                "publish": allow_publish,
            }
        }
        # Bound once: the control router shares one handler table among connections that
        # register the same handlers (a bound method made per connection would defeat it).
        self._operations = (
            ("subscribe", self._subscribe),
            ("unsubscribe", self._unsubscribe),
            ("publish", self._publish),
            ("presence", self._presence),
        )
        #: What a resume asks before it restores one of the session's channels (ROOM_CHECK).
        self._room_check = self._may_subscribe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http":
            body = b"this is a WebSocket endpoint (asgi_ws pub/sub)"
            await send({"type": "http.response.start", "status": 426,
                        "headers": [(b"upgrade", b"websocket"), (b"content-type", b"text/plain")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        scope, conn, receive, send = attach_session(scope, receive, send)
        if conn.outbound.limits is None:
            conn.outbound.configure(self.rooms.default_limits, self.rooms.totals)
        router = conn.control
        for op, handler in self._operations:
            router.register(op, handler)
        router.announce("pubsub", self._features["pubsub"])
        if self.authorize is not None:  # a resumed session gets back only what it may still subscribe to
            namespace(scope)[ROOM_CHECK] = self._room_check
        await conn.run(self._serve, scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        conn = scope["asgi_ws"]["connection"]
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return  # its rooms (and presence watches) end with the connection
            conn.control.send_error(
                "unexpected_message",
                'this endpoint takes control messages only, such as {"$ws":"subscribe","channel":"news"}',
            )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start the rooms (connect the broker) for the block; at its end drain this process's
        connections and close the rooms: what the ``lifespan`` protocol does for a top-level
        PubSubApp, for one that a framework routes to or mounts, which gets no lifespan events.

        It takes the application as Starlette's and FastAPI's ``lifespan=`` do::

            app = FastAPI(lifespan=pubsub.lifespan)  # or Starlette(lifespan=pubsub.lifespan)

        and composes with a lifespan of your own::

            @contextlib.asynccontextmanager
            async def lifespan(app):
                async with pubsub.lifespan(app):
                    yield  # your start-up before, your shutdown after
        """
        await self.rooms.start()
        try:
            yield
        finally:
            await self._stop()

    async def _stop(self) -> None:
        await drain(self.drain_timeout)  # under plain uvicorn, after its 1012s: see docs/shutdown.md
        await self.rooms.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.rooms.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- operations (shared by every connection: functions of (conn, message)) ----------------

    async def _subscribe(self, conn: Connection, message: dict[str, Any]) -> None:
        channel = _channel(message, "subscribe")
        reply: dict[str, Any] = {"channel": channel, **_ref(message)}
        watch = message.get("presence") is True
        if channel not in self.rooms.rooms_of(conn):
            if len(self.rooms.rooms_of(conn)) >= self.max_subscriptions:
                raise ProtocolError(
                    "too_many_subscriptions", f"at most {self.max_subscriptions} channels per connection", "subscribe"
                )
            await self._check(conn, channel, "subscribe")
            await self.rooms.join(channel, conn, format="channel", meta=_meta(message), watch=watch)
        elif watch:  # already in it: start watching its presence
            await self.rooms.join(channel, conn, format="channel", watch=True)
        if watch:
            reply["members"] = self._members(channel)
        conn.control.send("subscribed", reply)

    async def _unsubscribe(self, conn: Connection, message: dict[str, Any]) -> None:
        channel = _channel(message, "unsubscribe")
        await self.rooms.leave(channel, conn)
        conn.control.send("unsubscribed", {"channel": channel, **_ref(message)})

    async def _publish(self, conn: Connection, message: dict[str, Any]) -> None:
        channel = _channel(message, "publish")
        if not self.allow_publish:
            raise ProtocolError("forbidden", "clients may not publish on this endpoint", "publish")
        if "data" not in message:
            raise ProtocolError("bad_field", '"data" is required', "publish")
        data = message["data"]  # any JSON value that protocol.decode let through can be sent
        encoded = payload_of(data)  # once: the size check and the publish share it
        size = len(encoded.body) if encoded.kind == "json" else _utf8_size(data)  # a string: its JSON form
        if size > self.max_publish_bytes:
            raise ProtocolError("too_large", f"data is limited to {self.max_publish_bytes} bytes", "publish")
        await self._check(conn, channel, "publish")
        try:
            await self.rooms.publish(channel, encoded, exclude=None if self.echo else conn, sender=conn)
        except PermissionDenied as exc:
            raise ProtocolError("forbidden", exc.reason, "publish") from None
        if "id" in message:
            conn.control.send("published", {"channel": channel, **_ref(message)})

    async def _presence(self, conn: Connection, message: dict[str, Any]) -> None:
        channel = _channel(message, "presence")
        if channel not in self.rooms.rooms_of(conn):  # who is in a channel is what subscribing shows
            await self._check(conn, channel, "subscribe", ref="presence")
        conn.control.send("presence", {"channel": channel, "members": self._members(channel), **_ref(message)})

    # -- helpers ---------------------------------------------------------------------------------

    async def _check(self, conn: Connection, channel: str, action: str, *, ref: str | None = None) -> None:
        """Refuse (``forbidden``, about ``ref``, default ``action``) what ``authorize`` or
        ``rooms.authorize`` does not allow."""
        try:
            await self._authorized(conn.scope, channel, action)
            if action == "subscribe":
                await self.rooms.check(conn, channel, action)  # rooms.join checks it too; fail early
        except PermissionDenied as exc:
            raise ProtocolError("forbidden", exc.reason, ref or action) from None

    async def _authorized(self, scope: Scope, channel: str, action: str) -> None:
        """Raise PermissionDenied unless ``authorize`` (when set) returns True."""
        if self.authorize is not None:
            verdict = self.authorize(scope, channel, action)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is not True:
                raise PermissionDenied(verdict if isinstance(verdict, str) and verdict else "forbidden")

    async def _may_subscribe(self, scope: Scope, channel: str) -> None:
        await self._authorized(scope, channel, "subscribe")

    def _members(self, channel: str) -> list[dict[str, Any]]:
        return [{"member": e.member, "user": e.user, "meta": e.meta} for e in self.rooms.members(channel)]


def _channel(message: dict[str, Any], op: str) -> str:
    channel = field(message, "channel", str)
    if not channel or len(channel) > MAX_ROOM_LENGTH:
        raise ProtocolError("bad_field", f'"channel" must be 1 to {MAX_ROOM_LENGTH} characters', op)
    return str(channel)


#: Largest ``meta`` a client may attach to a subscription (JSON-encoded, UTF-8 bytes), shown to others by presence.
MAX_META_BYTES = 1024


def _meta(message: dict[str, Any]) -> dict[str, Any]:
    meta = field(message, "meta", dict, required=False) or {}
    try:
        check_meta(meta)  # decode() let only sendable values through; this bounds the nesting
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"meta: {exc.message}", "subscribe") from None
    if _utf8_size(meta) > MAX_META_BYTES:
        raise ProtocolError("too_large", f"meta is limited to {MAX_META_BYTES} bytes", "subscribe")
    return dict(meta)


def _utf8_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON in UTF-8 (what a client would send)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _ref(message: dict[str, Any]) -> dict[str, Any]:
    return {"id": message["id"]} if "id" in message else {}


__all__ = ["PubSubApp"]
