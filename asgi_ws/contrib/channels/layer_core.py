"""The broker side of a :class:`~asgi_ws.contrib.channels.BrokerChannelLayer` on one event
loop: its broker connection, the routing of sends, the local members of its groups, and what
arrives from the broker. The buffers of its channels are :class:`~.layer_buffers.Buffers`,
which :class:`Core` extends.

- A group here is its local members' inboxes. ``group_send`` fans out to them at once and
  publishes once on the group's broker channel; every other process that has members
  fans out the same way, and a process ignores its own echo.
- A send to another process's channel is one publish on that process's broker channel;
  a send to a general name (no ``!``) one publish on the name's broker channel, to which
  every process that ``receive()``\\ s on the name subscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ...brokers import BrokerEvent, MemoryBroker, broker_from_url
from ...exceptions import BrokerClosed
from . import layer_wire as wire
from .layer_buffers import Buffers, ChannelReader, Inbox
from .layer_state import Group, Subscriptions

if TYPE_CHECKING:
    from .layer import BrokerChannelLayer

logger = logging.getLogger("asgi_ws.channels")

#: Seconds a subscription's probe may take to come back before ``group_add`` returns anyway.
PROBE_TIMEOUT = 5.0


class Core(Buffers):
    """One event loop's share of a layer: its buffers and its broker (see the module docstring)."""

    def __init__(self, layer: BrokerChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(layer, loop)
        self.broker = broker_from_url(layer.url)
        self.remote = not isinstance(self.broker, MemoryBroker)
        self.groups: dict[str, Group] = {}
        self.subscriptions = Subscriptions(self)
        prefix = layer.prefix
        self.node_channel = f"{prefix}:n:{self.node}"
        self.all_channel = f"{prefix}:all"
        self._group_prefix, self._general_prefix, self._node_prefix = f"{prefix}:g:", f"{prefix}:c:", f"{prefix}:n:"
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._start_lock = asyncio.Lock()
        self._sweeper: asyncio.TimerHandle | None = None
        self.started = False

    # -- lifetime ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the broker and listen on this process's channels (once; retried after a failure).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
            BrokerClosed: the layer was closed on this loop.
        """
        if self.started:
            return
        async with self._start_lock:
            if self.closed:
                raise BrokerClosed("this channel layer was closed")
            if self.started:
                return
            try:
                await self.broker.connect(self.on_message, self.on_event)
                if self.remote:
                    await self.broker.subscribe(self.node_channel)
                    await self.broker.subscribe(self.all_channel)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.broker.close()
                self.broker = broker_from_url(self.layer.url)
                raise
            self.started = True
            self._sweeper = self.loop.call_later(self.sweep_interval, self.sweep)
            logger.info("channel layer on %s started (node %s)", self.broker.safe_url, self.node)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.report.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close_buffers()
        self.groups.clear()
        await self.broker.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("channel layer: a background broker operation failed: %r", task.exception())

    async def publish(self, channel: str, data: bytes) -> None:
        await self.broker.publish(channel, data)
        self.stats.published += 1

    async def probe(self) -> None:
        """Publish to ourselves and wait for it: every subscription made before is then in
        effect at the server (NATS confirms nothing; a later publish by anyone reaches us)."""
        if not self.remote:
            return
        token = secrets.token_hex(8)
        future = self._probes[token] = self.loop.create_future()
        try:
            await self.broker.publish(self.node_channel, wire.frame(wire.PROBE, self.node, token))
            await asyncio.wait_for(future, PROBE_TIMEOUT)
        except asyncio.TimeoutError:
            logger.warning(
                "channel layer: a subscription on %s was not confirmed within %g s", self.broker.safe_url, PROBE_TIMEOUT
            )
        finally:
            self._probes.pop(token, None)

    # -- channels ------------------------------------------------------------------------------------

    async def listen(self, name: str) -> Inbox:
        """Buffer what is sent to the general channel ``name`` from now on (subscribe to it)."""
        inbox = self.inbox(name, general=True)
        inbox.used_at = self.clock()
        if self.remote:
            await self.subscriptions.sync(self._general_prefix + name, lambda: self.listening(name))
        return inbox

    async def send(self, name: str, payload: bytes) -> None:
        owner = wire.owner_of(name)
        if owner == self.node or (owner is None and not self.remote):
            inbox = self.inbox(name, general=owner is None)
            if not self.offer(inbox, payload, self.clock() + self.expiry):
                self.release(inbox)
                from channels.exceptions import ChannelFull  # type: ignore[import-untyped]

                raise ChannelFull(name)
        elif not self.remote:
            self.unroutable(f"channel {name!r}")
        elif owner is None:
            await self.publish(self._general_prefix + name, wire.frame(wire.CHANNEL, self.node, name, payload))
        else:
            await self.publish(self._node_prefix + owner, wire.frame(wire.CHANNEL, self.node, name, payload))

    # -- groups ----------------------------------------------------------------------------------------

    def group_channel(self, group: str) -> str:
        return self._group_prefix + group

    async def group_add(self, group: str, channel: str) -> None:
        owner = wire.owner_of(channel)
        if owner is not None and owner != self.node:  # its process keeps its memberships
            if self.remote:
                await self.publish(self._node_prefix + owner, wire.frame(wire.ADD, self.node, group, channel.encode()))
            else:
                self.unroutable(f"group_add of channel {channel!r}")
            return
        state = self.groups.get(group)
        if state is None:
            state = self.groups[group] = Group(group, self.group_channel(group))
        state.joined.pop(channel, None)  # a new join moves it to the end (group_expiry restarts)
        state.joined[channel] = self.clock()
        if owner is None:
            state.forwards.add(channel)
        else:
            inbox = self.inbox(channel)
            state.members[channel] = inbox
            inbox.groups.add(group)
        await self.sync_group(group)

    async def group_discard(self, group: str, channel: str) -> None:
        owner = wire.owner_of(channel)
        if owner is not None and owner != self.node:
            if self.remote:
                discard = wire.frame(wire.DISCARD, self.node, group, channel.encode())
                await self.publish(self._node_prefix + owner, discard)
            return
        if owner is None and self.remote:  # any process may hold this forward
            await self.publish(self.all_channel, wire.frame(wire.DISCARD, self.node, group, channel.encode()))
        self.leave(group, channel)
        await self.sync_group(group)

    def leave(self, group: str, channel: str) -> bool:
        """Take ``channel`` out of ``group`` here; True when that emptied the group (then
        unsubscribe it: ``sync_group``)."""
        state = self.groups.get(group)
        if state is None or state.joined.pop(channel, None) is None:
            return False
        state.forwards.discard(channel)
        inbox = state.members.pop(channel, None)
        if inbox is not None:
            inbox.groups.discard(group)
            self.release(inbox)
        if state.joined:
            return False
        del self.groups[group]
        return True

    def leave_later(self, group: str, channel: str) -> None:
        """:meth:`leave`, from where no await is possible: the unsubscription runs as a task."""
        if self.leave(group, channel) and self.remote:
            self.spawn(self.sync_group(group))

    async def sync_group(self, group: str) -> None:
        if self.remote:
            await self.subscriptions.sync(self.group_channel(group), lambda: group in self.groups)

    async def group_send(self, group: str, payload: bytes) -> None:
        """The broker first, then the local fan-out, as ``Rooms.publish``: a broker client may
        write the publish only when this task runs again (redis-py does), after every consumer
        a local fan-out had woken has handled the message; published first, the other
        processes' members do not wait for this one's (local members wait one broker round trip
        instead). Local members still get the message when the broker fails; the failure is
        the caller's."""
        if not self.remote:
            state = self.groups.get(group)
            if state is not None:
                self.fan_out(state, payload)
            return
        try:
            await self.publish(self.group_channel(group), wire.frame(wire.GROUP, self.node, group, payload))
        finally:
            state = self.groups.get(group)  # the members as they are now, after the await
            if state is not None:
                self.fan_out(state, payload)

    def fan_out(self, state: Group, payload: bytes) -> None:
        """Hand ``payload`` to every local member of ``state``: the hot loop, no await."""
        now = self.clock()
        if self.layer.group_expiry is not None and state.joined:
            self.expire_members(state, now - self.layer.group_expiry)
        expires = now + self.expiry
        members = len(state.members)
        full: list[Inbox] = []
        for inbox in state.members.values():
            if not inbox.put(payload, expires):
                full.append(inbox)
        dropped = 0
        for inbox in full:  # outside the loop: purging changes the group
            if not self.purge(inbox, now):
                dropped += 1  # really full: this member misses the message
            # else an unread message expired: the channel has just left its groups, this message included
        self.stats.delivered += members - len(full)
        if dropped:
            self.stats.dropped_full += dropped
            self.report.add("full", dropped, f"channel {full[0].name!r} of group {state.name!r}")
        for name in state.forwards:
            if self.remote:
                self.spawn(
                    self.publish(self._general_prefix + name, wire.frame(wire.CHANNEL, self.node, name, payload))
                )
            else:
                self.deliver(name, payload, create=True)

    def expire_members(self, state: Group, before: float) -> None:
        joined = state.joined
        expired = []
        for channel, since in joined.items():
            if since > before:
                break
            expired.append(channel)
        for channel in expired:
            self.leave_later(state.name, channel)
        if expired:
            self.stats.memberships_expired += len(expired)
            self.report.add("left", len(expired), f"{expired[0]!r} from group {state.name!r}")

    # -- flush -------------------------------------------------------------------------------------------

    def flush_local(self) -> None:
        """Drop every buffered message and every group membership of this process."""
        groups = list(self.groups)
        self.groups.clear()
        self.drop_buffers()
        if self.remote:
            for group in groups:
                self.spawn(self.sync_group(group))

    async def flush(self) -> None:
        self.flush_local()
        if self.remote:
            await self.publish(self.all_channel, wire.frame(wire.FLUSH, self.node))

    # -- expiry ---------------------------------------------------------------------------------------------

    @property
    def sweep_interval(self) -> float:
        return max(0.05, min(self.expiry / 4, 5.0))

    def sweep(self) -> None:
        """Drop expired messages, expired memberships and idle general channels (on a timer)."""
        now = self.clock()
        for name in self.sweep_buffers(now):  # idle general names: unsubscribe them
            if self.remote:
                listening = functools.partial(self.listening, name)
                self.spawn(self.subscriptions.sync(self._general_prefix + name, listening))
        if self.layer.group_expiry is not None:
            for state in list(self.groups.values()):
                self.expire_members(state, now - self.layer.group_expiry)
        if not self.closed:
            self._sweeper = self.loop.call_later(self.sweep_interval, self.sweep)

    # -- the broker's side ----------------------------------------------------------------------------------

    def on_message(self, channel: str, data: bytes, position: str | None = None, /) -> None:
        """Everything that arrives from the broker; never raises, never delivers what it cannot check."""
        try:
            kind, node, target, body = wire.unframe(data)
            if kind == wire.GROUP:
                state = self.groups.get(target)
                if node == self.node or state is None:
                    return  # our own publish (our members had it at once), or no members here
                if channel != state.channel:
                    raise wire.WireError(f"a group message for {target!r} on another broker channel")
                self.layer.codec.decode(body)
                self.stats.received += 1
                self.fan_out(state, body)
            elif kind == wire.CHANNEL:
                owner = wire.owner_of(target)
                if owner is None:
                    addressed = channel == self._general_prefix + target
                else:
                    addressed = owner == self.node and channel == self.node_channel
                if not addressed:
                    raise wire.WireError(f"a message for channel {target!r} on another broker channel")
                self.layer.require_valid_channel_name(target)
                self.layer.codec.decode(body)
                self.stats.received += 1
                self.deliver(target, body)
            elif kind in (wire.ADD, wire.DISCARD):
                self._membership(kind, channel, target, body)
            elif kind == wire.FLUSH:
                if channel != self.all_channel:
                    raise wire.WireError("a flush on another broker channel")
                if node != self.node:
                    self.flush_local()
            else:  # PROBE
                future = self._probes.get(target) if node == self.node else None
                if future is not None and not future.done():
                    future.set_result(None)
        except (ValueError, TypeError) as exc:  # WireError, a bad name, bytes that are not UTF-8
            self.stats.malformed += 1
            self.report.add("malformed", 1, f"on {channel!r}: {exc}")
        except Exception:  # a bug, not the input: logged, and the broker's reader goes on
            logger.exception("channel layer: handling a broker message on %r failed", channel)

    def _membership(self, kind: str, channel: str, group: str, body: bytes) -> None:
        name = body.decode()  # a UnicodeDecodeError (a ValueError) is counted as malformed
        self.layer.require_valid_group_name(group)
        self.layer.require_valid_channel_name(name)
        owner = wire.owner_of(name)
        if kind == wire.ADD:
            if channel != self.node_channel or owner != self.node:
                raise wire.WireError(f"a group_add of {name!r} on another broker channel")
            self.spawn(self.group_add(group, name))
        elif owner == self.node or owner is None:
            self.leave_later(group, name)

    def on_event(self, event: BrokerEvent) -> None:
        if event.kind == "disconnected":
            self.stats.broker_disconnects += 1
            logger.warning(
                "channel layer lost the broker %s (%s): group messages and sends between processes are lost "
                "until it is back; %d group(s) and %d channel(s) here wait",
                event.url,
                event.error,
                len(self.groups),
                len(self.inboxes),
            )
        else:
            lost = event.lost_seconds or 0.0
            self.stats.broker_lost_seconds += lost
            logger.warning(
                "channel layer reconnected to %s after %.2f s, %d group subscription(s) restored: messages "
                "published in that window may be lost",
                event.url,
                lost,
                len(self.groups),
            )


__all__ = ["ChannelReader", "Core"]  # ChannelReader: from layer_buffers, where it now lives
