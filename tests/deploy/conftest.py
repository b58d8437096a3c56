"""A real deployment: Debian's nginx with TLS in front of several ``asgi-ws serve`` processes.

:class:`Deployment` runs ``deploy/nginx.conf`` (the file docs/deploy.md shows) with only its
``listen`` port and its upstream ``server`` lines changed to free ports, as an unprivileged-style
foreground nginx (``nginx -p DIR -c nginx.conf -g 'daemon off;'``) whose pid, logs and temporary
files are in a directory of the test, with a certificate of a CA the test makes (``trustme``).
Its workers share the machine's Redis as broker (with history) and session store, and one
resume key, so a session resumes on any of them.

``./scripts/test`` installs the nginx package when it is missing. Without it these tests skip
locally with a message saying so, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ROOT, free_port, wait_for_port

NGINX = os.environ.get("ASGI_WS_NGINX", "/usr/sbin/nginx")
CONFIG = ROOT / "deploy" / "nginx.conf"
#: The origin of the application's pages, allowed with --allow-origin.
ORIGIN = "https://app.example.test"
WORKERS = 3  # deploy/nginx.conf lists three upstream servers


def nginx_binary() -> str:
    found = NGINX if os.path.exists(NGINX) else shutil.which(NGINX)
    if not found:
        message = f"nginx not found at {NGINX}: install Debian's 'nginx' package (./scripts/test does)"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)  # CI must never skip
        raise AssertionError("unreachable")
    return found


def configured(listen_port: int, upstream_ports: Sequence[int]) -> str:
    """``deploy/nginx.conf`` with the test's ports: the only changes the test makes."""
    text = CONFIG.read_text()
    text, listens = re.subn(r"(?m)^(\s*)listen 443 ssl\b", rf"\g<1>listen 127.0.0.1:{listen_port} ssl", text)
    assert listens == 1, "deploy/nginx.conf: expected one `listen 443 ssl ...;` line"
    servers = iter(upstream_ports)
    text, count = re.subn(r"(?m)^(\s*server) 127\.0\.0\.1:\d+ ", lambda m: f"{m[1]} 127.0.0.1:{next(servers)} ", text)
    assert count == len(upstream_ports), f"deploy/nginx.conf: expected {len(upstream_ports)} upstream servers"
    return text


class Worker:
    """One ``asgi-ws serve`` process on a fixed port, which the test stops and starts again."""

    def __init__(self, port: int, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.port = port
        self.args = list(args)
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        cmd = [sys.executable, "-m", "asgi_ws.cli", "serve", "--port", str(self.port), *self.args]
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log)

    def wait_listening(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        wait_for_port(self.port, timeout=timeout, proc=self.proc)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the drain), then the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker on {self.port} still runs {timeout} s after SIGTERM") from None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def reap(self) -> None:
        """Wait for the process after :meth:`terminate`; kill it if it lingers."""
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Deployment:
    """nginx on ``port`` (TLS, ``wss://localhost:port/ws``) in front of ``workers``."""

    port: int
    prefix: Path
    workers: list[Worker]
    ca_file: Path
    namespace: str
    nginx: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.port}/ws"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the test's CA (the certificate names localhost)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def access_log(self) -> list[AccessLine]:
        path = self.prefix / "logs" / "access.log"
        return [AccessLine.parse(line) for line in path.read_text().splitlines()] if path.exists() else []

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""

    def worker_logs(self) -> str:
        return "\n".join(f"=== worker {w.port}\n{w.log.read_text()}" for w in self.workers if w.log.exists())

    def stop_nginx(self) -> None:
        """Graceful stop (SIGQUIT: every access line written), fast stop if it lingers."""
        if self.nginx is None or self.nginx.poll() is not None:
            return
        self.nginx.send_signal(signal.SIGQUIT)
        try:
            self.nginx.wait(10)
        except subprocess.TimeoutExpired:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(10)


_ACCESS = re.compile(
    r'^(?P<client>\S+) \[[^]]*\] "(?P<request>[^"]*)" (?P<status>\d+) \d+ '
    r"upstream=(?P<upstream>.*) upstream_status=(?P<upstream_status>.*) request_time=\S+$"
)


@dataclass(frozen=True)
class AccessLine:
    """One line of nginx's access log in deploy/nginx.conf's ``upstreams`` format."""

    client: str
    request: str
    status: int
    upstreams: tuple[str, ...]  # every worker tried, in order
    upstream_statuses: tuple[str, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> AccessLine:
        match = _ACCESS.match(text)
        assert match, f"an access log line not in the `upstreams` format: {text!r}"
        return cls(
            client=match["client"],
            request=match["request"],
            status=int(match["status"]),
            upstreams=_split(match["upstream"]),
            upstream_statuses=_split(match["upstream_status"]),
            text=text,
        )

    @property
    def websocket(self) -> bool:
        return self.request.startswith("GET /ws")


def _split(value: str) -> tuple[str, ...]:
    # nginx separates the servers of one upstream tried in turn with ", " (and upstream groups with " : ").
    return tuple(part.strip() for part in re.split(r", | : ", value) if part.strip())


def _make_certificate(directory: Path) -> Path:
    """The server's certificate and key for localhost beside nginx.conf; returns the CA file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(directory / "asgi-ws.key"))
    with (directory / "asgi-ws.crt").open("wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file


@contextlib.contextmanager
def deployment(redis_url: str, tmp_path: Path, *extra: str, heartbeat: float = 20.0) -> Iterator[Deployment]:
    """Start ``WORKERS`` ``asgi-ws serve`` processes and nginx in front of them; stop them all after."""
    binary = nginx_binary()
    namespace = f"deploy{uuid.uuid4().hex[:8]}"
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    ca_file = _make_certificate(prefix)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONWARNINGS": "ignore",
        "ASGI_WS_RESUME_KEYS": secrets.token_urlsafe(32),  # the same on every worker: sessions move
    }
    env.pop("FORWARDED_ALLOW_IPS", None)  # uvicorn's default: trust X-Forwarded-* from 127.0.0.1 (nginx)
    args = (
        "--broker", f"{redis_url}?history=1000",
        "--session-store", f"{redis_url}?prefix=asgi_ws:session:{namespace}:",
        "--namespace", namespace,
        "--allow-origin", ORIGIN,
        "--heartbeat-interval", str(heartbeat),
        "--rate", "1000",
        "--no-demo",
        "--log-level", "info",
        *extra,
    )  # fmt: skip
    workers = [Worker(free_port(), args, env, tmp_path / f"worker{i}.log") for i in range(WORKERS)]
    port = free_port()
    (prefix / "nginx.conf").write_text(configured(port, [w.port for w in workers]))
    deployed = Deployment(port, prefix, workers, ca_file, namespace)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_listening()
        out = (prefix / "logs" / "nginx.out").open("wb")
        with out:
            deployed.nginx = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;"], stdout=out, stderr=out
            )
        try:
            wait_for_port(port, timeout=15, proc=deployed.nginx)
        except RuntimeError as exc:
            raise AssertionError(f"nginx did not start: {exc}\n{(prefix / 'logs' / 'nginx.out').read_text()}") from None
        yield deployed
    finally:
        deployed.stop_nginx()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.reap()
