"""Servers in child processes: for RSS measurements, several workers, and benchmarks.

``bench/`` imports this module too, so tests and benchmarks start servers the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class ServerProcess:
    """A server in a child process: its port, CPU time and memory."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    def ws_url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process (from /proc, 10 ms resolution)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")


@contextlib.contextmanager
def server_process(
    cmd: Sequence[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    start_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    quiet: bool = False,
    stderr: Any = None,
    stdout: Any = None,
) -> Iterator[ServerProcess]:
    """Run ``cmd`` (a server listening on ``port``) in a child process until the block exits.

    ``stderr``, ``stdout``: files to write the server's output to (default: the test's own).
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.Popen(
        list(cmd), env=full_env, cwd=ROOT, stderr=subprocess.DEVNULL if quiet else stderr, stdout=stdout
    )
    try:
        wait_for_port(port, timeout=start_timeout, proc=proc)
        yield ServerProcess(proc, port)
    finally:
        proc.terminate()
        try:
            proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def uvicorn_process(
    app: str,
    *,
    ws: str = "websockets-sansio",
    port: int | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    start_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    stderr: Any = None,
) -> Iterator[ServerProcess]:
    """Run ``uvicorn app`` (an import string) in a child process until the block exits.

    ``prefix`` runs it under another program (``["valgrind", "--tool=callgrind", ...]``).
    """
    port = port or free_port()
    cmd = [*prefix, sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--ws", ws,
           "--log-level", "warning", "--no-access-log", "--lifespan", "off", "--timeout-graceful-shutdown", "2",
           *extra]  # fmt: skip
    with server_process(cmd, port, env=env, start_timeout=start_timeout, stop_timeout=stop_timeout,
                        quiet=bool(prefix), stderr=stderr) as server:  # fmt: skip
        yield server


def asgi_ws_serve(*args: str, port: int | None = None, env: dict[str, str] | None = None, stderr: Any = None) -> Any:
    """``asgi-ws serve`` (the main job) in a child process on ``port`` (default: a free one).

    ``stderr``: a file to write the server's log to (default: the test's own stderr).
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "asgi_ws.cli", "serve", "--port", str(port), "--log-level", "warning", *args]
    return server_process(cmd, port, env=env, stderr=stderr)
