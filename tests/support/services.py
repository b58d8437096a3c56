"""The machine's shared brokers (Redis, PostgreSQL, NATS, RabbitMQ), found and, when down, started.

Tests that need a broker ask for its URL through a fixture (``redis_url``...). When the
service does not answer, the command that starts it on these machines is tried once (as
root); if it still does not answer the test is skipped with the command to run, or, under
``CI=true``, fails: CI must never pass by skipping. These shared services are never stopped
by the tests: fault tests run their own servers (``tests/support/own_servers.py``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    port: int
    start: str  # the shell command that starts it on these machines

    def up(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False


def _pg_start() -> str:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    return f"pg_ctlcluster --skip-systemctl-redirect {versions[-1] if versions else '15'} main start"


SERVICES = {
    "redis": Service(
        "redis",
        "redis://127.0.0.1:6379/0",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
        "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
    "postgres": Service("postgres", "postgres://postgres@127.0.0.1:5432/test", 5432, _pg_start()),
    "nats": Service(
        "nats",
        "nats://127.0.0.1:4222",
        4222,
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
        "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    ),
    "rabbitmq": Service("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", 5672, "rabbitmq-server -detached"),
}

_tried: set[str] = set()


def require(name: str) -> str:
    """Return the URL of service ``name``, starting it if it is down; skip or fail if impossible."""
    service = SERVICES[name]
    if service.up():
        return service.url
    if name not in _tried and os.geteuid() == 0:
        _tried.add(name)
        subprocess.run(service.start, shell=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if service.up():
                return service.url
            time.sleep(0.2)
    message = f"{name} is not reachable on 127.0.0.1:{service.port}; start it with: {service.start}"
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)  # CI must never skip
    raise AssertionError("unreachable")
