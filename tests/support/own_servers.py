"""Broker servers a test starts, kills and restarts itself, on free ports.

Fault tests use these, never the machine's shared services. The binaries are on the machine
(Debian's redis-server, nats-server and PostgreSQL); PostgreSQL refuses to run as root, so
its cluster is created and run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.procs import free_port, wait_for_port


class OwnServer:
    """A broker server process of the test's own: ``start``, ``kill`` (abruptly), ``restart``."""

    def __init__(self, name: str, port: int, url: str) -> None:
        self.name = name
        self.port = port
        self.url = url
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=30, proc=self.proc)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL): connections drop as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()


class RedisServer(OwnServer):
    def __init__(self) -> None:
        port = free_port()
        super().__init__("redis", port, f"redis://127.0.0.1:{port}/0")

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


class NatsServer(OwnServer):
    def __init__(self) -> None:
        port = free_port()
        super().__init__("nats", port, f"nats://127.0.0.1:{port}")

    def command(self) -> list[str]:
        return [shutil.which("nats-server") or "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(self.port)]


def _pg_bin(tool: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {tool} is not installed")
    return candidates[-1]


class PostgresServer(OwnServer):
    """A throw-away PostgreSQL cluster (initdb in a temporary directory, owned by ``postgres``)."""

    def __init__(self) -> None:
        port = free_port()
        super().__init__("postgres", port, f"postgres://postgres@127.0.0.1:{port}/postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="asgi_ws_pg_"))
        os.chmod(self.dir, 0o777)
        self.data = self.dir / "data"
        self._as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @staticmethod
    def _as_postgres(*args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def command(self) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return [
            *prefix,
            _pg_bin("postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
        ]  # fmt: skip

    def start(self) -> None:
        super().start()
        # The port opens while PostgreSQL still recovers ("the database system is starting
        # up", after a SIGKILL): wait until it accepts connections.
        deadline = time.monotonic() + 30
        while subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-t", "1"],
            capture_output=True,
        ).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not accept connections within 30 s")
            time.sleep(0.05)

    def kill(self) -> None:
        # runuser is our child, the postmaster its: SIGKILL the postmaster (its pid is the
        # first line of postmaster.pid), as a crash would; its backends exit on their own.
        if self.proc is not None and self.proc.poll() is None:
            pid_file = self.data / "postmaster.pid"
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            self.proc.wait(10)
            deadline = time.monotonic() + 10  # backends notice the postmaster's death and exit
            while time.monotonic() < deadline and _backends_alive(self.data):
                time.sleep(0.05)
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _backends_alive(data: Path) -> bool:
    marker = str(data).encode()
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if marker in Path(cmdline).read_bytes():
                return True
    return False


@contextlib.contextmanager
def own_server(kind: str) -> Iterator[OwnServer]:
    server: OwnServer = {"redis": RedisServer, "nats": NatsServer, "postgres": PostgresServer}[kind]()
    server.start()
    try:
        yield server
    finally:
        server.stop()
