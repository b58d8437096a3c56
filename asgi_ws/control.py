"""The control-protocol router of a connection: decode once, dispatch to the owning feature.

Features register the operations they handle (heartbeat: ``ping``/``pong``; resumption and
the pub/sub app add theirs) and what they announce in ``welcome``. The router answers
``hello`` itself, and answers every malformed or unknown control message with an ``error``
control message; the connection keeps working.

What a middleware stack registers is the same for every connection through it, so it lives
in immutable :class:`_Table` objects shared by all those connections (each connection holds
one reference): handlers are functions of ``(conn, message)``, not per-connection closures.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import protocol
from .outbound.batching import BatchLimits
from .protocol import OP_KEY, ProtocolError

if TYPE_CHECKING:
    from .connection import Connection

logger = logging.getLogger("asgi_ws.control")

Handler = Callable[["Connection", dict[str, Any]], "Awaitable[None] | None"]

#: Distinct extensions remembered per table, the least recently used forgotten first (a
#: misuse, such as registering a new closure for every connection, only churns the cache).
_MAX_CACHED = 256


class _Table:
    """Handlers and announced features of a middleware stack: immutable, shared, interned."""

    __slots__ = ("_next", "features", "handlers")

    def __init__(self, handlers: dict[str, Handler], features: dict[str, Any]) -> None:
        self.handlers = handlers
        self.features = features
        self._next: dict[tuple[str, str, int], _Table] = {}

    def extended(self, kind: str, key: str, value: Any) -> _Table:
        """This table plus one handler (``kind="op"``) or feature (``kind="feature"``)."""
        cache_key = (kind, key, id(value))
        cached = self._next
        table = cached.get(cache_key)
        if table is not None:
            if len(cached) > 1:  # the most recently used last: evictions take the oldest
                cached[cache_key] = cached.pop(cache_key)
        else:
            handlers, features = dict(self.handlers), dict(self.features)
            if kind == "op":
                if key in handlers:
                    raise RuntimeError(f"control operation {key!r} is already handled on this connection")
                handlers[key] = value
            else:
                features[key] = value
            table = _Table(handlers, features)
            if len(cached) >= _MAX_CACHED:
                del cached[next(iter(cached))]
            cached[cache_key] = table  # the value stays referenced by the table: its id stays unique
        return table


class ControlRouter:
    """Routes the control messages of one connection."""

    __slots__ = ("_on_opt_in", "_table", "conn", "opted_in", "version")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._table = _ROOT
        self._on_opt_in: list[Callable[[], object]] | None = None
        #: True once the client said ``hello``: the server may then send it control messages.
        self.opted_in = False
        #: Protocol version agreed in ``welcome``.
        self.version: int | None = None

    def register(self, op: str, handler: Handler) -> None:
        """Make ``handler(conn, message)`` (sync or async) handle operation ``op``.

        ``handler`` should be a module-level function or one shared by every connection of
        a middleware, not a closure made per connection.
        """
        self._table = self._table.extended("op", op, handler)

    def announce(self, feature: str, description: Any) -> None:
        """Describe ``feature`` in ``welcome`` (``{"features": {feature: description}}``); share ``description``."""
        self._table = self._table.extended("feature", feature, description)

    def on_opt_in(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the client says ``hello`` (at once if it already did)."""
        if self.opted_in:
            callback()
        elif self._on_opt_in is None:
            self._on_opt_in = [callback]
        else:
            self._on_opt_in.append(callback)

    def send(self, op: str, fields: dict[str, Any] | None = None) -> None:
        """Send a control message to the client (through the connection's one outbound path)."""
        self.conn.outbound.send_control(protocol.encode(op, fields))

    def send_error(self, code: str, message: str, ref: str | None = None) -> None:
        self.conn.outbound.send_control(protocol.error(code, message, ref))

    async def handle(self, text: str) -> None:
        """Handle one control frame; never raises (but for cancellation).

        Bad input is answered with its ``error``. A handler failing otherwise (a bug, a broker
        error) is answered with ``internal_error`` and logged with its traceback: the
        connection, and every other one, keeps working.
        """
        op = None
        try:
            message = protocol.decode(text)
            op = message[OP_KEY]
            handler = self._table.handlers.get(op)
            if handler is None:
                known = ", ".join(sorted(self._table.handlers))
                raise ProtocolError("unknown_op", f"unknown operation; this server handles: {known}", op)
            result = handler(self.conn, message)
            if inspect.isawaitable(result):
                await result
        except ProtocolError as exc:
            self.send_error(exc.code, exc.message, exc.ref)
        except Exception:
            logger.exception("the control operation %r failed", op)
            self.send_error("internal_error", "the server failed to handle this message (it is logged)", op)

    def _opted_in(self, version: int, batch: bool = False) -> None:
        if self.opted_in:
            raise ProtocolError("bad_message", "hello was already received", "hello")
        self.version = min(version, protocol.VERSION)
        self.opted_in = True
        features = self._table.features
        self.send("welcome", {"v": self.version, "features": features})
        if batch and "batch" in features:  # asked for, and offered (BackpressureMiddleware)
            self.conn.outbound.start_batching(BatchLimits.of_feature(features["batch"]))
        callbacks, self._on_opt_in = self._on_opt_in, None
        for callback in callbacks or ():
            callback()


def _hello(conn: Connection, message: dict[str, Any]) -> None:
    version = protocol.field(message, "v", int)
    if version < 1:
        raise ProtocolError("unsupported_version", f"this server speaks version {protocol.VERSION}", "hello")
    conn.control._opted_in(version, message.get("batch") is True)


_ROOT = _Table({"hello": _hello}, {})

__all__ = ["ControlRouter", "Handler"]
