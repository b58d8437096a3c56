"""``asgi-ws serve --workers N``: a supervisor and its worker processes on one port.

Each worker is ``asgi-ws serve`` itself (``--workers 1 --reuse-port``) listening on its own
socket of the port's ``SO_REUSEPORT`` group (:func:`listen_socket`); :func:`supervise` starts
them, restarts one that dies, and passes SIGTERM/SIGINT on so that every worker drains.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import secrets
import socket
import sys

from .serve_app import CannotStart

#: Exit statuses of ``asgi-ws``: a runtime failure (a missing package, a broker that cannot be
#: reached, a port in use), and a command line that cannot work (argparse's status).
FAILED, USAGE = 1, 2

#: Seconds a worker must have run for its exit to be a crash to restart rather than a start-up failure.
WORKER_SETTLE = 5.0
#: Seconds between a worker's death and its restart.
WORKER_RESTART_DELAY = 0.5
#: Seconds a stopping worker gets past its drain and uvicorn's shutdown (the lifespan's
#: shutdown: the broker's goodbye, the session store's last writes) before it is killed.
WORKER_STOP_GRACE = 30.0


def supervise(args: argparse.Namespace, argv: list[str], *, shutdown_grace: float) -> int:
    """Run ``args.workers`` worker processes (``asgi-ws serve`` each, ``--workers 1``) on one
    port: each listens on its own socket of the port's ``SO_REUSEPORT`` group, so the kernel
    spreads new connections evenly over them (by the hash of their addresses: a worker that is
    slow to accept does not leave its share to the fastest, which could take more connections
    than its open-file limit during a reconnect storm), and a worker that is down leaves its
    share to the others. The supervisor holds the port bound (not listening) meanwhile.

    A worker that dies (a crash, SIGKILL) is restarted; one that fails at start-up (status 1 or
    2 within :data:`WORKER_SETTLE` seconds: a broker that cannot be reached) stops them all with
    its status. SIGTERM/SIGINT are passed on: every worker drains, and the supervisor returns 0
    once they have exited. Unless ``ASGI_WS_RESUME_KEYS`` is set, the supervisor makes one
    random key for all its workers: a session resumes on any of them, and after a worker's
    restart (not after the supervisor's).

    Raises:
        CannotStart: the port cannot be bound.
    """
    import signal
    import subprocess
    import time

    log = logging.getLogger("asgi_ws.workers")
    if not log.handlers and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    listener = listen_socket(args.host, args.port, listen=False)
    env = dict(os.environ)
    if not env.get("ASGI_WS_RESUME_KEYS") and args.resume_window > 0:
        env["ASGI_WS_RESUME_KEYS"] = secrets.token_urlsafe(32)
        log.warning(
            "ASGI_WS_RESUME_KEYS is not set: the workers share a random key of this supervisor; "
            "sessions resume on any worker, and survive a worker's restart but not the supervisor's"
        )
    if args.session_store.startswith("memory:") and args.resume_window > 0:
        log.warning(
            "--session-store memory:// is one per worker: a client that reconnects to another worker cannot "
            "resume (it is told resume_failed and starts afresh); use redis:// to resume on any worker"
        )
    command = [sys.executable, "-m", "asgi_ws.cli", *argv, "--workers", "1", "--reuse-port"]
    stopping = False
    # After SIGTERM a worker drains (--drain-timeout), then uvicorn's shutdown and the lifespan's
    # (the broker, the session store) run: one still alive well past that is killed.
    stop_deadline = math.inf
    patience = args.drain_timeout + shutdown_grace + WORKER_STOP_GRACE

    def start(index: int) -> tuple[subprocess.Popen[bytes], float]:
        proc = subprocess.Popen(command, env=env, preexec_fn=_end_with_parent)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc, time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping, stop_deadline
        if not stopping:
            log.info("stopping %d workers (they drain)", len(workers))
            stop_deadline = time.monotonic() + patience
        stopping = True
        for proc, _ in workers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    workers = [start(i) for i in range(args.workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while True:
            alive = False
            for index, (proc, started) in enumerate(workers):
                code = proc.poll()
                if code is None:
                    alive = True
                    continue
                if stopping:
                    continue
                if code in (FAILED, USAGE) and time.monotonic() - started < WORKER_SETTLE:
                    log.error("worker %d could not start (status %d): stopping", index, code)
                    status = code
                    stop(signal.SIGTERM, None)
                    continue
                log.warning("worker %d (pid %d) exited with status %d: restarting it", index, proc.pid, code)
                time.sleep(WORKER_RESTART_DELAY)
                workers[index] = start(index)
                alive = True
            if stopping and not alive:
                return status
            if stopping and time.monotonic() > stop_deadline:
                for index, (proc, _) in enumerate(workers):
                    if proc.poll() is None:
                        log.warning("worker %d (pid %d) still running %.0f s after SIGTERM: killing it",
                                    index, proc.pid, patience)  # fmt: skip
                        proc.kill()
                stop_deadline = math.inf
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.close()


def _end_with_parent() -> None:
    """In a worker, before it runs: SIGTERM when the supervisor dies, whatever kills it (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def listen_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A socket of ``host:port``'s ``SO_REUSEPORT`` group: a worker's (listening), or the
    supervisor's (bound only: it holds the port and receives no connection)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)  # uvicorn's backlog
    except OSError as exc:
        raise CannotStart(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


__all__ = ["FAILED", "USAGE", "listen_socket", "supervise"]
