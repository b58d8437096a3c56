"""The broker interface: how messages of a room reach the other worker processes.

Small on purpose (as broadcaster's backends are). A broker carries opaque ``bytes`` on named
channels; :class:`~asgi_ws.rooms.Rooms` does everything else (one subscription per room per
process, encoding once, local fan-out, presence).

The contract every broker meets, checked by ``tests/brokers/conformance.py``:

- ``connect(deliver, on_event)`` connects or raises :class:`~asgi_ws.exceptions.BrokerUnavailable`
  naming the URL (never its password). From then on every message published on a channel this
  broker subscribes to is passed to ``deliver(channel, payload)``, on the event loop, in the
  order the broker received it from each publisher. Own publishes are delivered too.
- Channel names are any non-empty string of at most 256 characters; payloads any bytes, of any
  size the backend can carry (PostgreSQL's NOTIFY limit is worked around, not imposed).
- ``subscribe``/``unsubscribe`` are idempotent; concurrent first subscribes all take effect.
- When the connection to the backend is lost, the broker reconnects with exponential backoff,
  restores its subscriptions, and reports ``BrokerEvent("disconnected", ...)`` then
  ``BrokerEvent("reconnected", ..., lost_seconds=...)``; messages published meanwhile may be
  lost (pub/sub backends keep nothing), which is why the loss window is reported.
- ``close()`` is idempotent; using the broker afterwards raises ``BrokerClosed``.

Brokers that can keep **history** (``memory://``, ``redis://``, ``postgres://`` and ``nats://``
with ``?history=N``) give every message a *position* in its channel: ``publish`` returns it,
``deliver`` receives it as a third argument, and :meth:`Broker.history` returns what a channel
carried after a position. Positions are consecutive in a channel (``"<epoch>-<n>"``, see
:mod:`asgi_ws.brokers.history`), every process sees a channel's messages in position order, and
``history`` returns all that followed a position or None, never a part. Session resumption
numbers room messages from it instead of storing them per member.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import BrokerError

logger = logging.getLogger("asgi_ws.brokers")
T = TypeVar("T")


class Deliver(Protocol):
    """``deliver(channel, payload)``, or ``deliver(channel, payload, position)`` from a broker with history."""

    def __call__(self, channel: str, payload: bytes, position: str | None = None, /) -> None: ...


def position_key(position: str) -> tuple[int, int]:
    """The order of a position (``"<int>-<int>"``, as Redis stream ids): compare these, not the strings."""
    high, _, low = position.partition("-")
    return int(high), int(low or 0)


#: The position before any message of a channel.
START = "0-0"


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """Something that happened to a broker's connection.

    Attributes:
        kind: ``"disconnected"`` (the backend connection was lost; reconnecting) or
            ``"reconnected"`` (connected again, subscriptions restored).
        url: the broker URL, without password.
        error: what broke the connection, for ``disconnected``.
        lost_seconds: how long the broker could not receive, for ``reconnected``: messages
            published in that window may be lost.
    """

    kind: Literal["disconnected", "reconnected"]
    url: str
    error: str | None = None
    lost_seconds: float | None = None


OnEvent = Callable[[BrokerEvent], None]


class Broker(abc.ABC):
    """Base class of every broker; see the module docstring for the contract."""

    #: Scheme(s) of the URLs this broker serves, e.g. ``("redis", "rediss")``.
    schemes: tuple[str, ...] = ()

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs and errors."""
        return redact_url(self.url)

    @abc.abstractmethod
    async def connect(self, deliver: Deliver, on_event: OnEvent | None = None) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    #: Messages kept per channel for :meth:`history`; 0 (the default) keeps none.
    history_size: int = 0

    @abc.abstractmethod
    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Publish; returns the message's position when the broker keeps history, else None."""

    async def history(self, channel: str, after: str) -> list[tuple[str, bytes]] | None:
        """The messages of ``channel`` after position ``after``, oldest first, with their positions;
        None when the history no longer reaches back to ``after`` (trimmed)."""
        raise self._no_history()

    async def last_position(self, channel: str) -> str:
        """The position of the newest message of ``channel`` (:data:`START` when none)."""
        raise self._no_history()

    def _no_history(self) -> BrokerError:
        kept_by = "memory://, redis://, postgres:// and nats:// do, with ?history=N"
        return BrokerError(f"the broker {self.safe_url} keeps no history ({kept_by})")

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None: ...

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abc.abstractmethod
    async def subscription_count(self) -> int:
        """How many channels this broker is subscribed to, asked of the backend where it can be."""


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (a password or token that an error message may quote) replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def describe_error(exc: BaseException, secret: str | None = None) -> str:
    """``"<type>: <message>"`` of ``exc`` (the type alone when it has no message), for a broker's
    logs and errors, with ``secret`` replaced by ``***`` (:func:`scrub`)."""
    return scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secret)


def backoff_delays(base: float = 0.1, cap: float = 10.0) -> Callable[[int], float]:
    """Full-jitter exponential backoff: the delay before reconnect attempt ``n`` (from 0)."""

    def delay(attempt: int) -> float:
        return random.uniform(0, min(cap, base * 2**attempt))

    return delay


def emit_event(on_event: OnEvent | None, event: BrokerEvent) -> None:
    """Hand ``event`` to a broker's ``on_event`` callback; one that raises is logged, and never
    reaches the broker's connection handling."""
    if on_event is not None:
        try:
            on_event(event)
        except Exception:
            logger.exception("the on_event callback failed on %s of %s", event.kind, event.url)


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a broker's ``task`` (unless it is the one calling) and wait for its end, neither
    raising the task's cancellation nor hiding the caller's."""
    if task is not None and task is not asyncio.current_task():
        task.cancel()
        await asyncio.wait([task])


async def retry(
    attempt: Callable[[], Awaitable[T]],
    failures: tuple[type[BaseException], ...],
    *,
    delay: Callable[[int], float],
    describe: Callable[[BaseException], str],
    what: str,
) -> T:
    """A broker's reconnection loop: ``await attempt()`` until it succeeds, sleeping ``delay(n)``
    before try ``n`` (from 0; :func:`backoff_delays`); each failure in ``failures`` is logged at
    DEBUG as ``"<what> failed: <describe(exc)>"``, anything else propagates."""
    tries = 0
    while True:
        await asyncio.sleep(delay(tries))
        tries += 1
        try:
            return await attempt()
        except failures as exc:
            logger.debug("%s failed: %s", what, describe(exc))


MAX_CHANNEL_LENGTH = 256


def check_channel(channel: str) -> None:
    """Raise ValueError for a channel name outside the contract (empty, too long, not a string)."""
    if not isinstance(channel, str) or not channel or len(channel) > MAX_CHANNEL_LENGTH:
        raise ValueError(f"channel names are non-empty strings of at most {MAX_CHANNEL_LENGTH} characters")


_SAFE_NAME = re.compile(r"[A-Za-z0-9-]+")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def escape_name(channel: str) -> str:
    """``channel`` as one token of ``A-Z a-z 0-9 - _``, for backends whose names are words
    (a NATS subject token, an AMQP topic word): its UTF-8 bytes are kept when in
    ``A-Z a-z 0-9 -`` and written ``_XX`` (hex) otherwise, ``_`` included, so distinct names
    never share a token. ``room-1`` → ``room-1``; ``a.b`` → ``a_2Eb``.
    """
    if _SAFE_NAME.fullmatch(channel):
        return channel
    data = channel.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in _SAFE_BYTES else f"_{b:02X}" for b in data)


__all__ = [
    "MAX_CHANNEL_LENGTH",
    "Broker",
    "BrokerEvent",
    "Deliver",
    "OnEvent",
    "backoff_delays",
    "cancel_and_wait",
    "check_channel",
    "describe_error",
    "emit_event",
    "escape_name",
    "redact_url",
    "retry",
    "scrub",
]
