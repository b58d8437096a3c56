"""Brokers carry a room's messages between worker processes; chosen by URL.

=========================  ===========================================  ==================
URL                        backend                                      install
=========================  ===========================================  ==================
``memory://``              this process only (the default)              (built in)
``redis://``, ``rediss://``  Redis pub/sub (``?sharded=1``: Cluster SPUBLISH)  ``asgi-ws[redis]``
``postgres://``            PostgreSQL LISTEN/NOTIFY (asyncpg)           ``asgi-ws[postgres]``
``nats://``, ``tls://``    NATS core pub/sub (nats-py)                  ``asgi-ws[nats]``
``amqp://``, ``amqps://``  RabbitMQ, a topic exchange (aio-pika)        ``asgi-ws[amqp]``
=========================  ===========================================  ==================
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError, MissingDependencyError
from .base import Broker as Broker
from .base import BrokerEvent as BrokerEvent
from .memory import MemoryBroker as MemoryBroker


def broker_from_url(url: str) -> Broker:
    """Return the broker for ``url``; the backend's client library is imported only here.

    Raises:
        ConfigurationError: the scheme is unknown.
        MissingDependencyError: the backend's client library is not installed (the message
            names the extra to install).
    """
    scheme = urlsplit(url).scheme.lower()
    try:
        if scheme == "memory":
            return MemoryBroker(url)
        if scheme in ("redis", "rediss"):
            from .redis import RedisBroker

            return RedisBroker(url)
        if scheme in ("postgres", "postgresql"):
            from .postgres import PostgresBroker

            return PostgresBroker(url)
        if scheme in ("nats", "tls"):
            from .nats import NatsBroker

            return NatsBroker(url)
        if scheme in ("amqp", "amqps"):
            from .amqp import AmqpBroker

            return AmqpBroker(url)
    except ModuleNotFoundError as exc:
        extra = {"rediss": "redis", "postgresql": "postgres", "tls": "nats", "amqps": "amqp"}.get(scheme, scheme)
        if extra == "amqp" and sys.version_info < (3, 11):
            message = f"the {scheme}:// broker needs aio-pika 10.2, which needs Python 3.11"
            raise MissingDependencyError(message) from exc
        raise MissingDependencyError(
            f"the {scheme}:// broker needs {exc.name!r}: pip install 'asgi-ws[{extra}]'"
        ) from exc
    raise ConfigurationError(
        f"unknown broker URL scheme {scheme!r}: use memory://, redis://, rediss://, postgres://, nats://, tls://, "
        "amqp:// or amqps://"
    )


__all__ = ["Broker", "BrokerEvent", "MemoryBroker", "broker_from_url"]
