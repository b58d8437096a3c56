"""When a lean consumer closes stale database connections before a handler.

Since Channels 4.2, ``AsyncConsumer.dispatch`` awaits ``channels.db.aclose_old_connections()``
before every handler: ``sync_to_async(django.db.close_old_connections)()``, a round trip
through asgiref's thread-sensitive worker thread, where Django's async ORM (``aget``,
``acreate``...) runs its queries. ``close_old_connections`` looks at the connections that
thread has *opened* (``connections.all(initialized_only=True)``, a connection object with a
live DB-API connection) and closes those past ``CONN_MAX_AGE``, those left in a transaction
state other than the configured autocommit, and those whose last error made them unusable;
it resets the health-check flag of the others (``CONN_HEALTH_CHECKS``). With no connection
open, it does nothing at all.

The policies of :class:`~asgi_ws.contrib.channels.LeanDispatchMixin` (its
``close_old_connections`` attribute):

- ``"auto"`` (the default): Channels' hop, skipped when no database connection is open in
  the process, which is when the hop would do nothing. Connections are seen opening through
  Django's ``connection_created`` signal (and the process's first hop also notes those its
  thread opened before this module was imported). A consumer that never touches the
  database never pays the hop; one whose handlers use the async ORM pays it as in Channels.
- ``"always"``: Channels' hop before every handler.
- a number of seconds: the hop at most once per that many seconds per process (and, as
  ``"auto"``, never while no connection is open). The trade-off: ``CONN_MAX_AGE`` is
  enforced up to that late (``CONN_MAX_AGE = 0``, one connection per message in Channels,
  behaves like ``CONN_MAX_AGE`` = the interval), and a connection broken by an error in one
  handler may be handed to the next handler within the interval (whose query then fails
  with the database's error) instead of being replaced first.
- ``"never"`` (or None): no hop. Sound when handlers use the database only through
  ``database_sync_to_async`` (which closes stale connections around each call itself) or
  not at all.

Either way, Channels itself has no per-handler isolation to offer: the hop and the handler's
queries are separate trips to the one shared thread, and another consumer's queries may run
between them. "auto" skips only hops that would close nothing at the moment it looks; a
connection another consumer is opening at that instant is fresh.
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal

from asgiref.sync import sync_to_async

from ...exceptions import ConfigurationError

Policy = Literal["auto", "always", "never"] | float | None

#: Connection objects (``BaseDatabaseWrapper``) that opened a connection in this process, by id.
_opened: dict[int, weakref.ref[Any]] = {}
#: Whether a hop has noted the connections its thread opened before the signal was connected.
_scanned = False
#: When the last hop of an interval policy started (time.monotonic()).
_last_hop = -math.inf


def _note(wrapper: Any) -> None:
    key = id(wrapper)

    def forget(ref: weakref.ref[Any]) -> None:
        if _opened.get(key) is ref:
            del _opened[key]

    _opened[key] = weakref.ref(wrapper, forget)


def _connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _note(connection)


def _connect_signal() -> None:
    from django.db.backends.signals import connection_created  # type: ignore[import-untyped]

    connection_created.connect(_connection_created, weak=False, dispatch_uid="asgi_ws.contrib.channels.db")


_connect_signal()


def connections_open() -> bool:
    """Whether any thread of the process holds an open database connection (read without
    locks: a snapshot of attribute values, as ``close_old_connections`` would find them)."""
    for ref in tuple(_opened.values()):  # a copy made in one step: other threads may add
        wrapper = ref()
        if wrapper is not None and wrapper.connection is not None:
            return True
    return False


def check(policy: Policy) -> bool:
    """Whether a handler about to run needs the hop first, under ``policy``."""
    global _last_hop
    if policy == "always":
        return True
    if policy is None or policy == "never":
        return False
    if _scanned and not connections_open():
        return False
    if policy == "auto":
        return True
    now = time.monotonic()
    if now - _last_hop < policy:
        return False
    _last_hop = now  # before the hop: the handlers meanwhile skip it
    return True


def _close_old_connections(close: Callable[[], None]) -> None:
    """``close`` (``close_old_connections``) in the hop's thread, noting what that thread has open."""
    global _scanned
    from django.db import connections  # type: ignore[import-untyped]

    close()
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None and id(wrapper) not in _opened:
            _note(wrapper)
    _scanned = True


async def close_old_connections(policy: Policy) -> None:
    """The hop: Channels' own ``aclose_old_connections()`` for "always", else the same call
    noting the open connections it finds.

    Either way the function called is ``channels.db.close_old_connections``, looked up when
    the hop starts, as Channels' own hop does: Channels' test communicators replace it with
    a no-op while a test waits on them (a Django ``TestCase``'s connection is in a
    transaction, which the real one would close).
    """
    import channels.db  # type: ignore[import-untyped]

    if policy == "always":
        await channels.db.aclose_old_connections()
    else:
        await sync_to_async(functools.partial(_close_old_connections, channels.db.close_old_connections))()


def validate(policy: Any, owner: str) -> None:
    """Raises ConfigurationError naming ``owner`` when ``policy`` is not a policy."""
    if policy in ("auto", "always", "never", None):
        return
    if isinstance(policy, (int, float)) and not isinstance(policy, bool) and policy > 0:
        return
    raise ConfigurationError(
        f"{owner}.close_old_connections must be 'auto', 'always', 'never' (or None), or seconds > 0; got {policy!r}"
    )


__all__ = ["Policy", "check", "close_old_connections", "connections_open", "validate"]
