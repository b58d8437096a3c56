"""What :func:`~asgi_ws.client.connect` takes: where to connect, the client's options, and websockets' own.

:class:`ClientOptions` types ``connect(url, **options)`` and ``Client(url, **options)`` (one
definition instead of fourteen parameters written twice); :class:`Settings` is the same,
checked once and frozen. :class:`Urls` picks the URL of each connection attempt.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..exceptions import ConfigurationError
from .events import Event
from .policy import Backoff

#: A ticket, or a callable (sync or async) returning a fresh one before each connection.
TicketSource = str | Callable[[], str | Awaitable[str]]
#: Where to connect: a URL, a list of URLs (each attempt after a failure or a drop takes the next
#: one), or a callable (sync or async) returning the URL of each attempt.
UrlSource = str | Sequence[str] | Callable[[], str | Awaitable[str]]
#: Extra handshake headers: a mapping or ``(name, value)`` pairs.
Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class ClientOptions(TypedDict, total=False):
    """The keyword options of :func:`~asgi_ws.client.connect` and :class:`~asgi_ws.client.Client`.

    The client's own (defaults in brackets): ``subprotocols`` (None), ``headers`` (None),
    ``ticket`` (None), ``ticket_param`` ("ticket"), ``resume`` (True), ``heartbeat`` (True), ``batch`` (True),
    ``backoff`` (``Backoff()``), ``open_timeout`` (10.0), ``max_queue`` (1024), ``max_pending``
    (100), ``stop_codes`` (()), ``on_event`` (None): see :func:`~asgi_ws.client.connect`.
    The others are passed to :func:`websockets.asyncio.client.connect` as they are.
    """

    subprotocols: Sequence[str] | None
    headers: Headers | None
    ticket: TicketSource | None
    ticket_param: str
    resume: bool
    heartbeat: bool
    batch: bool
    backoff: Backoff | None
    open_timeout: float
    max_queue: int
    max_pending: int
    stop_codes: Collection[int]
    on_event: Callable[[Event], object] | None
    # websockets.asyncio.client.connect's own, passed through.
    ssl: ssl.SSLContext | bool | None
    server_hostname: str | None
    origin: str | None
    compression: str | None
    proxy: str | bool | None
    user_agent_header: str | None
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float | None
    max_size: int | None
    write_limit: int | tuple[int, int]
    logger: Any


#: The options the client handles itself; every other one goes to websockets.
OWN_OPTIONS = frozenset(
    {"subprotocols", "headers", "ticket", "ticket_param", "resume", "heartbeat", "batch", "backoff",
     "open_timeout", "max_queue", "max_pending", "stop_codes", "on_event"}
)  # fmt: skip
#: websockets options the client sets itself.
RESERVED_OPTIONS = frozenset({"uri", "subprotocols", "additional_headers", "open_timeout"})


@dataclass(frozen=True, slots=True)
class Settings:
    """:class:`ClientOptions` checked and with their defaults; ``websockets``: the options passed through."""

    subprotocols: tuple[str, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    ticket: TicketSource | None = None
    ticket_param: str = "ticket"
    resume: bool = True
    heartbeat: bool = True
    batch: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    open_timeout: float = 10.0
    max_queue: int = 1024
    max_pending: int = 100
    stop_codes: frozenset[int] = frozenset()
    on_event: Callable[[Event], object] | None = None
    websockets: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Settings:
        """The settings of ``connect(url, **options)``.

        Raises:
            TypeError: an option websockets would get that the client sets itself.
            ValueError: ``max_queue`` below 1 or ``max_pending`` below 0.
        """
        passed = {name: value for name, value in options.items() if name not in OWN_OPTIONS}
        reserved = RESERVED_OPTIONS & passed.keys()
        if reserved:
            raise TypeError(f"connect() sets {', '.join(sorted(reserved))} itself; use its own parameters")
        own = {name: value for name, value in options.items() if name in OWN_OPTIONS}
        headers = own.pop("headers", None)
        subprotocols = own.pop("subprotocols", None)
        backoff = own.pop("backoff", None)
        settings = cls(
            subprotocols=tuple(subprotocols) if subprotocols else None,
            headers=tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers or ()),
            backoff=backoff if backoff is not None else Backoff(),
            stop_codes=frozenset(own.pop("stop_codes", ())),
            websockets=passed,
            **own,
        )
        if settings.max_queue < 1 or settings.max_pending < 0:
            raise ValueError("max_queue must be >= 1 and max_pending >= 0")
        return settings

    @property
    def can_refresh(self) -> bool:
        """Whether fresh credentials can be fetched (``ticket`` is a callable): 4401 and 401 are then retried."""
        return callable(self.ticket)


class Urls:
    """The URL of each connection attempt, from a :data:`UrlSource`.

    A list is used in turn: the client stays on a URL while it works and moves to the next one
    after each failed attempt or dropped connection (another server of the cluster takes the
    session over: with a shared session store it resumes there).
    """

    def __init__(self, source: UrlSource) -> None:
        if not isinstance(source, str) and not callable(source):
            if not source:
                raise ConfigurationError("connect() needs at least one URL")
            if not all(isinstance(url, str) for url in source):
                raise ConfigurationError("connect(): every URL of the list must be a str")
        self.source = source
        self._index = 0
        #: The URL of the last attempt (None before the first).
        self.last: str | None = source if isinstance(source, str) else None

    async def next_attempt(self) -> str:
        """The URL to try now."""
        source = self.source
        if isinstance(source, str):
            url = source
        elif callable(source):
            result = source()
            url = await result if inspect.isawaitable(result) else result
            if not isinstance(url, str):
                raise ConfigurationError(f"the URL callable returned {url!r}, not a str")
        else:
            url = source[self._index % len(source)]
        self.last = url
        return url

    def advance(self) -> None:
        """The attempt failed or its connection dropped: the next attempt takes the next URL of a list."""
        self._index += 1

    def describe(self) -> str:
        """For logs: the URL(s) without their query strings."""
        from .connection import redact

        if isinstance(self.source, str):
            return redact(self.source)
        if callable(self.source):
            return getattr(self.source, "__name__", "a URL callable")
        return ", ".join(redact(url) for url in self.source)


__all__ = [
    "OWN_OPTIONS",
    "RESERVED_OPTIONS",
    "ClientOptions",
    "Headers",
    "Settings",
    "TicketSource",
    "UrlSource",
    "Urls",
]
