"""Channels consumers without Channels' per-message dispatch costs.

::

    from channels.generic.websocket import AsyncWebsocketConsumer
    from asgi_ws.contrib.channels import LeanDispatchMixin


    class ChatConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):  # the one line that changes
        groups = ["chat"]

        async def chat_message(self, event):
            await self.send(text_data=event["text"])

Channels' ``AsyncConsumer`` spends most of a delivery's time around the handler, not in it:

- ``dispatch`` awaits ``aclose_old_connections()`` before every handler, a round trip through
  asgiref's worker thread (since Channels 4.2). Here it is decided by the consumer's
  ``close_old_connections`` policy: by default ("auto") the hop is made only while the process
  has a database connection open, the only time it can do anything (see
  :mod:`asgi_ws.contrib.channels.db_connections` for the exact trade-offs of each policy).
- ``await_many_dispatch`` makes a new task for every message and an ``asyncio.wait`` over
  both sources to find it. Here one loop per consumer takes messages as they come: from
  :class:`~asgi_ws.contrib.channels.BrokerChannelLayer`, straight from the channel's buffer
  (the layer calls the consumer back when it buffers a message: no ``receive()`` call, no
  task); from the server (and from any other channel layer), through one pending
  ``receive()`` task at a time, as before.

What Channels guarantees is kept: one handler at a time per consumer, each source's messages
in the order they arrived (when both have one, the server's goes first, as in Channels),
``StopConsumer`` ending the consumer, groups joined in ``websocket_connect`` and left in
``websocket_disconnect`` (Channels' own methods, unchanged), a consumer's ``dispatch`` still
overridable. And one loss less: Channels' loop, stopping, discards a message its channel
receive task had already taken; here a message leaves the layer's buffer only when the
consumer is about to handle it, so whatever is left stays for ``receive()`` (or expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.consumer import get_handler_name  # type: ignore[import-untyped]
from channels.exceptions import StopConsumer  # type: ignore[import-untyped]
from channels.generic.websocket import (  # type: ignore[import-untyped]
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from channels.layers import get_channel_layer  # type: ignore[import-untyped]

from ...types import Message, Receive, Scope, Send
from . import db_connections
from .db_connections import Policy
from .layer import BrokerChannelLayer

#: Handler names by message type, as ``channels.consumer.get_handler_name`` makes them.
_HANDLER_NAMES: dict[str, str] = {}
_MAX_NAMES = 4096
_EMPTY: Any = object()


def handler_name(message: Message) -> str:
    """``channels.consumer.get_handler_name``, remembered per message type.

    Raises:
        ValueError: the message has no ``type``, or one starting with ``.`` or ``_``.
    """
    try:
        return _HANDLER_NAMES[message["type"]]
    except (KeyError, TypeError):
        pass
    name: str = get_handler_name(message)
    if len(_HANDLER_NAMES) < _MAX_NAMES:
        _HANDLER_NAMES[message["type"]] = name
    return name


class LeanDispatchMixin:
    """Mix into an async Channels consumer (before it): ``class C(LeanDispatchMixin,
    AsyncWebsocketConsumer)``. See the module docstring for what changes.

    Attributes:
        close_old_connections: when to close stale database connections before a handler:
            "auto" (default: as Channels, except while no connection is open), "always"
            (as Channels), "never" (or None), or a number of seconds (at most once per that
            many seconds per process). Details: :mod:`asgi_ws.contrib.channels.db_connections`.
    """

    close_old_connections: ClassVar[Policy] = "auto"

    channel_layer_alias: str
    channel_layer: Any
    channel_name: str
    channel_receive: Callable[[], Awaitable[Message]]
    base_send: Send
    scope: Scope

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "_sync", False):
            raise TypeError(
                f"{cls.__name__}: LeanDispatchMixin is for async consumers (AsyncConsumer, "
                "AsyncWebsocketConsumer, AsyncJsonWebsocketConsumer), not SyncConsumer"
            )
        db_connections.validate(cls.close_old_connections, cls.__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``AsyncConsumer.__call__`` with the lean loop in place of ``await_many_dispatch``."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await _Loop(self, receive).run()

    async def dispatch(self, message: Message) -> None:
        """``AsyncConsumer.dispatch``: the handler named by the message's type, after the
        ``close_old_connections`` policy's hop when it asks for one."""
        handler = getattr(self, handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        policy = self.close_old_connections
        if db_connections.check(policy):
            await db_connections.close_old_connections(policy)
        await handler(message)


class _Polled:
    """A receive callable with at most one pending call, as a task (the server's ``receive``,
    or ``channel_layer.receive`` of a layer without readers)."""

    __slots__ = ("call", "task", "wake")

    def __init__(self, call: Callable[[], Awaitable[Message]], wake: Callable[[Any], None]) -> None:
        self.call = call
        self.wake = wake
        self.task: asyncio.Future[Message] | None = None

    def take(self) -> Any:
        task = self.task
        if task is None:
            task = self.task = asyncio.ensure_future(self.call())
            task.add_done_callback(self.wake)
        if not task.done():
            return _EMPTY
        self.task = None
        return task.result()

    def ready(self) -> bool:
        return self.task is not None and self.task.done()

    async def close(self) -> None:
        """Cancel the pending call, as Channels' ``await_many_dispatch`` does when it ends."""
        task, self.task = self.task, None
        if task is not None:
            task.remove_done_callback(self.wake)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Read:
    """The consumer's channel read from BrokerChannelLayer's buffer (``BrokerChannelLayer.reader``)."""

    __slots__ = ("reader",)

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def take(self) -> Any:
        message = self.reader.take()
        return _EMPTY if message is None else message

    def ready(self) -> bool:
        return bool(self.reader.ready())

    async def close(self) -> None:
        self.reader.close()


class _Loop:
    """One consumer's messages, handed to its ``dispatch`` one at a time."""

    __slots__ = ("consumer", "sources", "waiter")

    def __init__(self, consumer: LeanDispatchMixin, receive: Receive) -> None:
        self.consumer = consumer
        self.waiter: asyncio.Future[None] | None = None
        self.sources: list[_Polled | _Read] = [_Polled(receive, self.wake)]
        layer = consumer.channel_layer
        if layer is not None:
            reader = None
            if isinstance(layer, BrokerChannelLayer):
                reader = layer.reader(consumer.channel_name, self.wake)
            self.sources.append(_Read(reader) if reader is not None else _Polled(consumer.channel_receive, self.wake))

    def wake(self, _: Any = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self) -> None:
        dispatch = self.consumer.dispatch
        sources = self.sources
        loop = asyncio.get_running_loop()
        try:
            while True:
                handled = False
                for source in sources:  # the server's first, as in Channels
                    message = source.take()
                    if message is not _EMPTY:
                        handled = True
                        await dispatch(message)
                if handled:
                    continue
                if any(source.ready() for source in sources):
                    continue
                waiter = self.waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    self.waiter = None
        finally:
            await self.close()

    async def close(self) -> None:
        """Close every source, even when closing one fails (a pending ``receive()`` that had
        failed raises its error here, as in Channels' ``await_many_dispatch``): the channel's
        reader is let go of whatever happens, so its buffer is left to ``receive()``. The first
        failure is raised once all are closed."""
        failure: BaseException | None = None
        for source in self.sources:
            try:
                await source.close()
            except BaseException as exc:  # raised below, once the others are closed
                failure = failure or exc
        if failure is not None:
            raise failure


class LeanWebsocketConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):  # type: ignore[misc]
    """Channels' ``AsyncWebsocketConsumer`` with :class:`LeanDispatchMixin`: a drop-in base."""


class LeanJsonWebsocketConsumer(LeanDispatchMixin, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Channels' ``AsyncJsonWebsocketConsumer`` with :class:`LeanDispatchMixin`: a drop-in base."""


__all__ = ["LeanDispatchMixin", "LeanJsonWebsocketConsumer", "LeanWebsocketConsumer", "handler_name"]
