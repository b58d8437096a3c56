"""``BrokerChannelLayer``: a Django Channels channel layer on asgi_ws's brokers.

``group_send`` is one broker publish per group, whatever its size: each process holds its own
members of a group and subscribes to the group's broker channel once, so the message is
encoded once and every process fans it out to its local members' buffers. How it works and
how it differs from channels_redis: ``docs/channels-layer.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.layers import BaseChannelLayer  # type: ignore[import-untyped]

from ...brokers import broker_from_url
from ...exceptions import ConfigurationError
from . import layer_wire as wire
from .layer_buffers import ChannelReader
from .layer_core import Core
from .layer_wire import MessageCodec

logger = logging.getLogger("asgi_ws.channels")

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(slots=True)
class LayerStats:
    """Counters of one layer, over every event loop it ran on (``layer.stats``)."""

    sent: int = 0  # send() calls
    group_sent: int = 0  # group_send() calls
    published: int = 0  # broker publishes: one per group_send, one per send to another process
    received: int = 0  # messages that came from the broker for this process
    delivered: int = 0  # messages put in a channel's buffer here (a group message once per local member)
    dropped_full: int = 0  # messages a channel here had no room for (group_send and other processes' sends)
    expired: int = 0  # messages dropped unread after ``expiry`` seconds
    memberships_expired: int = 0  # channels removed from groups: group_expiry, or an unread message expired
    malformed: int = 0  # broker messages that were not this layer's: ignored
    unroutable: int = 0  # sends to channels no process here can have (memory://), general names not listened to
    broker_disconnects: int = 0
    broker_lost_seconds: float = 0.0  # total of the loss windows: messages published then may be lost


class BrokerChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """A Channels channel layer on an asgi_ws broker; the ``groups`` and ``flush`` extensions.

    Configured as Channels configures layers (``CHANNEL_LAYERS[alias]["CONFIG"]`` are these
    keyword arguments)::

        CHANNEL_LAYERS = {"default": {
            "BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer",
            "CONFIG": {"url": "redis://127.0.0.1:6379/0"},
        }}

    Args:
        url: the broker, as for :class:`~asgi_ws.Rooms`: ``memory://`` (one process, the
            default), ``redis://``, ``postgres://``, ``nats://``.
        prefix: namespace of this layer's broker channels; layers with different prefixes on
            one broker do not see each other.
        expiry: seconds a message may wait unread in a channel's buffer; then it is dropped
            (counted, logged) and the channel leaves its groups, as in Channels' in-memory layer.
        group_expiry: seconds a group membership lasts (Channels' default, one day); None: forever.
        capacity: messages a channel's buffer holds; beyond, :class:`channels.exceptions.ChannelFull`.
        channel_capacity: capacities by channel name: ``{"pattern": n}``, globs (``"http.response!*"``)
            or compiled regexes, first match wins.

    Raises:
        ConfigurationError: an option is invalid, or the URL's scheme unknown.
        MissingDependencyError: msgpack, or the broker's client library, is not installed.
    """

    extensions = ["groups", "flush"]  # noqa: RUF012 - Channels' own layers declare it so
    #: Seconds between two lines of the aggregated drop log (one line per burst at most this often).
    log_interval = 10.0
    #: The clock of expiries (tests replace it on an instance before its first use).
    _clock = staticmethod(time.monotonic)

    def __init__(
        self,
        url: str = "memory://",
        prefix: str = "channels",
        expiry: float = 60,
        group_expiry: float | None = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ConfigurationError("prefix must be 1 to 64 characters of A-Z a-z 0-9 _ . -")
        if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or not expiry > 0:
            raise ConfigurationError("expiry must be a number of seconds > 0")
        if group_expiry is not None and (
            isinstance(group_expiry, bool) or not isinstance(group_expiry, (int, float)) or not group_expiry > 0
        ):
            raise ConfigurationError("group_expiry must be a number of seconds > 0, or None (memberships never expire)")
        capacities = dict(channel_capacity or {})
        for value in (capacity, *capacities.values()):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError("capacity and channel_capacity values must be whole numbers of messages >= 1")
        self.url = url
        self.prefix = prefix
        self.group_expiry = group_expiry
        self.channel_capacity = self.compile_capacities(capacities)
        self.codec = MessageCodec()
        broker_from_url(url)  # an unknown scheme or a missing client library fails here, at start-up
        #: This layer's id in its process-local channel names (``specific.<node>!...``) and on the broker.
        self.node = uuid.uuid4().hex[:16]
        self.stats = LayerStats()
        self._cores: dict[asyncio.AbstractEventLoop, Core] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={broker_from_url(self.url).safe_url!r}, prefix={self.prefix!r})"

    # -- the channel layer API ------------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``.

        Raises:
            ChannelFull: a channel of this process (or, on ``memory://``, any channel) is full.
                A channel of another process drops the message there instead (counted, logged).
            TypeError: an invalid channel name, or a message that is not a dict of msgpack types.
            BrokerError: the broker did not take it.
        """
        self.require_valid_channel_name(channel)
        payload = self._encode(message)
        self.stats.sent += 1
        await self._run("send", channel, payload)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel`` (this process's own, or a general name: see
        :meth:`listen`); a cancelled receive takes nothing from the channel.

        Raises:
            ValueError: ``channel`` is another process's (made by another layer's new_channel()).
        """
        core = self._cores.get(asyncio.get_running_loop())
        if core is None or not core.started:
            self.require_valid_channel_name(channel)
            result: dict[str, Any] = await self._run("receive", channel)
            return result
        if channel not in core.inboxes:
            self.require_valid_channel_name(channel)
        return await core.receive(channel)

    def reader(self, channel: str, listener: Callable[[], None]) -> ChannelReader | None:
        """Read this process's ``channel`` without a ``receive()`` call per message (what
        :class:`~asgi_ws.contrib.channels.LeanDispatchMixin` consumers do).

        ``listener()`` is called, from the code that buffers it, after each message for the
        channel; take messages with ``reader.take()`` (no await: nothing is lost however the
        reader's task ends) and ``reader.close()`` when done. Capacity, expiry and
        ``ChannelFull`` are as for ``receive()``. Returns None where a reader cannot be had:
        off the event loop the layer runs on, before ``new_channel()`` connected it there, or
        for a channel not made by this layer's ``new_channel()``; use ``receive()`` then.

        Raises:
            RuntimeError: the channel already has a reader.
        """
        core = self._cores.get(asyncio.get_running_loop())
        if core is None or not core.started or wire.owner_of(channel) != self.node:
            return None
        self.require_valid_channel_name(channel)
        return core.reader(channel, listener)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new channel name of this process (``<prefix>.<node>!<random>``); connects the broker."""
        name = f"{prefix}{'' if prefix.endswith('.') else '.'}{self.node}!{secrets.token_hex(6)}"
        self.require_valid_channel_name(name)
        await self._run("start")
        return name

    async def listen(self, channel: str) -> None:
        """Start buffering what is sent to the general (``!``-less) ``channel`` in this process.

        ``receive(channel)`` does it on its first call; until then, messages sent to the name
        reach only the processes already listening (memory:// buffers them regardless). A
        process stops listening ``expiry`` seconds after its last ``receive`` of the name.
        """
        self.require_valid_channel_name(channel)
        if "!" in channel:
            raise ValueError("listen() is for general channel names; process-local channels always receive")
        await self._run("listen", channel)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``; once this returns, every later ``group_send`` reaches it."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._run("group_add", group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (nothing happens if it is not a member)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._run("group_discard", group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member of ``group`` in every process: one broker publish.

        Members without room for it miss it (counted, logged in aggregate); never ChannelFull.
        """
        self.require_valid_group_name(group)
        payload = self._encode(message)
        self.stats.group_sent += 1
        await self._run("group_send", group, payload)

    async def flush(self) -> None:
        """Drop every buffered message and group membership, in every process of this prefix."""
        await self._run("flush")

    async def close(self) -> None:
        """Close the broker connections (of every event loop); the layer connects again if used."""
        current = asyncio.get_running_loop()
        cores, self._cores = self._cores, {}
        for loop, core in cores.items():
            if loop is current:
                await core.close()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(core.close(), loop))
            # else: it is closed with its loop (see _core)

    def _encode(self, message: dict[str, Any]) -> bytes:
        if not isinstance(message, dict):
            raise TypeError("message is not a dict")
        return self.codec.encode(message)

    # -- event loops ---------------------------------------------------------------------------------

    def _core(self) -> Core:
        """This loop's share of the layer; or the share of a loop running in another thread
        (``async_to_sync`` from a thread without a loop), where the call is then made."""
        loop = asyncio.get_running_loop()
        core = self._cores.get(loop)
        if core is not None:
            return core
        for other in list(self._cores.values()):
            if other.loop.is_closed():
                self._cores.pop(other.loop, None)
            elif other.loop.is_running():
                return other
        core = self._cores[loop] = Core(self, loop)
        self._close_with_loop(core)
        return core

    async def _run(self, method: str, *args: Any) -> Any:
        core = self._core()
        call = _call(core, method, *args)
        if core.loop is asyncio.get_running_loop():
            return await call
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, core.loop))

    def _close_with_loop(self, core: Core) -> None:
        """Close ``core`` when its loop is closed (asgiref's ``async_to_sync`` and ``asyncio.run``
        close theirs), as channels_redis does: its connections must not outlive the loop."""
        loop = core.loop
        original = loop.close  # the loop's own, or another library's wrapper (channels_redis wraps it too)

        def close() -> None:
            loop.close = original  # type: ignore[method-assign]
            if self._cores.get(loop) is core:
                del self._cores[loop]
            if not core.closed and not loop.is_running() and not loop.is_closed():
                try:
                    loop.run_until_complete(core.close())
                except Exception as exc:
                    logger.warning("channel layer: closing its broker with the event loop failed: %r", exc)
            original()

        with contextlib.suppress(AttributeError):  # a loop without instance attributes: closed by close() only
            loop.close = close  # type: ignore[method-assign]


async def _call(core: Core, method: str, *args: Any) -> Any:
    await core.start()
    return await getattr(core, method)(*args)


__all__ = ["BrokerChannelLayer", "LayerStats"]
