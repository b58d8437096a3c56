"""The history of a :class:`~asgi_ws.brokers.nats.NatsBroker` (``?history=N&history_ttl=3600``,
a server with JetStream). The methods raise nats-py's errors as they are: the broker turns
them into :class:`~asgi_ws.exceptions.BrokerError`.

Each channel gets a JetStream stream of its own, capturing its subject, limited to N messages
and to ``history_ttl`` seconds of age, which republishes every stored message (RePublish) on
``<prefix>._h.<token>`` with its stream sequence in a header. Publishing is a JetStream
publish (acknowledged once stored); subscribers listen to the republished subject, so a
message is delivered only after it is kept, in the stream's order. One stream per channel
makes the sequence numbers consecutive in a channel, which is what positions are
(:mod:`asgi_ws.brokers.history`); the stream's name ends with the time it was created, in
milliseconds: the epoch (:func:`epoch_of`). The first publish to a channel creates its stream
(a race between processes is harmless: the loser finds the winner's). History is read with a
short-lived pull consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

from nats.errors import Error as NatsError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RePublish,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NoStreamResponseError, NotFoundError

from .base import START, escape_name, position_key
from .history import after_history, position

logger = logging.getLogger("asgi_ws.brokers.nats")

_REPUBLISHED = "_h"  # <prefix>._h.<token>: a subject of three tokens, never a channel's


def epoch_of(stream: str) -> int:
    """The epoch of a history stream: its name ends with its creation time in milliseconds."""
    tail = stream.rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


class StreamHistory:
    """The history streams of one broker (``prefix``): ``size`` messages a channel at most,
    for ``ttl`` seconds, on ``storage`` (``"file"`` or ``"memory"``)."""

    def __init__(self, prefix: str, *, size: int, ttl: float, storage: str) -> None:
        self.prefix = prefix
        self.size = size
        self.ttl = ttl
        self.storage = storage
        self._streams: dict[str, str] = {}  # channel -> the name of its history stream

    def republished(self, channel: str) -> str:
        """The subject on which ``channel``'s stream republishes what it keeps (subscribe to it)."""
        return f"{self.prefix}.{_REPUBLISHED}.{escape_name(channel)}"

    def _stream_config(self, channel: str, subject: str, name: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=[subject],
            max_msgs=self.size,
            max_age=self.ttl,
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            republish=RePublish(src=subject, dest=self.republished(channel)),
            allow_direct=True,
        )

    async def publish(self, js: Any, channel: str, subject: str, payload: bytes) -> str:
        """Keep ``payload`` in ``channel``'s stream (created by its first message); its position."""
        for attempt in range(3):
            try:
                ack = await js.publish(subject, payload)
                break
            except NoStreamResponseError:  # the channel's first message: create its stream
                if attempt == 2:
                    raise
                await self._create_stream(js, channel, subject)
        self._streams[channel] = ack.stream
        return position(epoch_of(ack.stream), ack.seq)

    async def _create_stream(self, js: Any, channel: str, subject: str) -> None:
        digest = hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        name = f"{self.prefix.replace('.', '_')}_{digest}_{int(time.time() * 1000)}"
        try:
            await js.add_stream(self._stream_config(channel, subject, name))
        except BadRequestError as exc:  # another process created it first (the subject is taken)
            logger.debug("NATS stream %s not created: %s", name, exc)

    async def _stream_of(self, js: Any, channel: str, subject: str) -> Any:
        """The StreamInfo of ``channel``'s history stream, or None if it has none."""
        name = self._streams.get(channel)
        try:
            if name is None:
                name = await js.find_stream_name_by_subject(subject)
            return await js.stream_info(name)
        except NotFoundError:
            if channel in self._streams:  # deleted since: look it up again
                del self._streams[channel]
                return await self._stream_of(js, channel, subject)
            return None

    async def after(self, js: Any, channel: str, subject: str, after: str) -> list[tuple[str, bytes]] | None:
        """What ``channel``'s stream kept after ``after`` (:func:`asgi_ws.brokers.history.after_history`)."""
        info = await self._stream_of(js, channel, subject)
        if info is None:
            return []
        epoch = epoch_of(info.config.name)
        state = info.state
        after_epoch, after_number = position_key(after)
        start = 1 if after_epoch < epoch else after_number + 1
        entries: list[tuple[str, bytes]] = []
        if after_epoch <= epoch and state.messages and start <= state.last_seq:
            entries = await self._read(js, info.config.name, subject, max(start, state.first_seq), state.last_seq)
        oldest = position(epoch, state.first_seq) if state.messages else None
        return after_history(after, oldest, entries, last=position(epoch, state.last_seq))

    async def _read(self, js: Any, stream: str, subject: str, first: int, last: int) -> list[tuple[str, bytes]]:
        """Messages ``first`` to ``last`` of a stream, with a pull consumer of their own."""
        epoch = epoch_of(stream)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        consumer = await js.pull_subscribe(subject, stream=stream, config=config)
        entries: list[tuple[str, bytes]] = []
        try:
            while not entries or position_key(entries[-1][0])[1] < last:
                try:
                    batch = await consumer.fetch(min(last - first + 1 - len(entries), 1000), timeout=2.0)
                except asyncio.TimeoutError:
                    break  # trimmed meanwhile: what was read is checked as a whole
                for msg in batch:
                    entries.append((position(epoch, msg.metadata.sequence.stream), msg.data))
        finally:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await consumer.unsubscribe()
                await js.delete_consumer(stream, consumer._consumer)
        return entries

    async def last_position(self, js: Any, channel: str, subject: str) -> str:
        info = await self._stream_of(js, channel, subject)
        if info is None or not info.state.last_seq:
            return START
        return position(epoch_of(info.config.name), info.state.last_seq)


__all__ = ["StreamHistory", "epoch_of"]
