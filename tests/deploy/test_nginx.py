"""Behind nginx as docs/deploy.md configures it: wss://, Origin, the cluster, forwarded addresses.

Each test starts three ``asgi-ws serve`` workers on the Redis broker and session store and
Debian's nginx in front of them with ``deploy/nginx.conf`` (tests/deploy/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import pytest

from asgi_ws.client import Backoff, Client, ClientGaveUp, HandshakeRefused, connect
from tests.deploy.conftest import CONFIG, ORIGIN, WORKERS, Deployment, deployment
from tests.support.procs import ROOT

PER_IP = 2  # --max-connections-per-ip of each worker in the per-address test


def test_docs_deploy_shows_the_config_files_as_they_are() -> None:
    """docs/deploy.md shows deploy/nginx.conf (the one these tests run) and deploy/haproxy.cfg
    verbatim, so the documented configurations cannot drift from the files."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for language, path in (("nginx", CONFIG), ("haproxy", ROOT / "deploy" / "haproxy.cfg")):
        blocks = re.findall(rf"```{language}\n(.*?)```", doc, flags=re.S)
        assert path.read_text() in blocks, f"docs/deploy.md must show {path.name} verbatim in a ```{language} block"
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", CONFIG.read_text())
    assert read_timeout and int(read_timeout[1]) > 2 * 20, "longer than asgi-ws serve's heartbeat interval + timeout"


async def _open(deployed: Deployment, origin: str = ORIGIN, **options: object) -> Client:
    """One client through nginx over wss://, refusals raised at once (no retries)."""
    return await connect(
        deployed.url,
        ssl=deployed.ssl_context(),
        headers={"Origin": origin, **options.pop("headers", {})},  # type: ignore[dict-item]
        backoff=Backoff(max_attempts=0),
        **options,  # type: ignore[arg-type]
    )


async def test_wss_through_nginx_reaches_every_worker_and_checks_https_origins(redis_url: str, tmp_path: Path) -> None:
    with deployment(redis_url, tmp_path) as deployed:
        subscribers: list[Client] = []
        try:
            for _ in range(WORKERS):  # least_conn: one per worker
                subscribers.append(await _open(deployed))
            await asyncio.gather(*(client.subscribe("feed") for client in subscribers))
            # The page's own origin (https://localhost:PORT) passes the same-origin check: nginx
            # forwards the Host header with its port.
            publisher = await _open(deployed, origin=f"https://localhost:{deployed.port}")
            await publisher.publish("feed", "over wss")
            await publisher.close()
            for client in subscribers:
                frame = await asyncio.wait_for(client.recv(), 10)
                assert json.loads(frame) == {"channel": "feed", "data": "over wss"}
            # The allowed origin is https://app.example.test: the same host over http is refused.
            with pytest.raises(HandshakeRefused) as refused:
                await _open(deployed, origin="http://app.example.test")
            assert refused.value.status == 403
        finally:
            await asyncio.gather(*(client.close() for client in subscribers), return_exceptions=True)
        deployed.stop_nginx()
        lines = [line for line in deployed.access_log() if line.websocket]
    opened = [line for line in lines if line.status == 101]
    assert len(opened) == WORKERS + 1, [line.text for line in lines]
    assert {line.upstreams[-1] for line in opened} == {f"127.0.0.1:{w.port}" for w in deployed.workers}
    assert [line.status for line in lines if line.status != 101] == [403]


async def test_per_ip_limits_count_the_forwarded_client_address(redis_url: str, tmp_path: Path) -> None:
    """Workers see the client's address (X-Forwarded-For from nginx on 127.0.0.1, which uvicorn
    trusts by default), so --max-connections-per-ip counts clients, not the proxy. The limit is
    per worker: behind WORKERS workers an address gets WORKERS x PER_IP connections."""
    with deployment(redis_url, tmp_path, "--max-connections-per-ip", str(PER_IP)) as deployed:
        clients: list[Client] = []
        try:
            with pytest.raises(ClientGaveUp) as refused:
                for _ in range(WORKERS * PER_IP + 1):
                    clients.append(await _open(deployed, local_addr=("127.0.0.2", 0)))
            assert len(clients) == WORKERS * PER_IP, "least_conn fills every worker before one refuses"
            assert "HTTP 429" in refused.value.reason, refused.value.reason
            # Another address is not limited by the first one's connections...
            clients.append(await _open(deployed, local_addr=("127.0.0.3", 0)))
            # ...and a client cannot pass for another by sending its own X-Forwarded-For: nginx
            # appends the address it sees, and uvicorn takes the rightmost untrusted one.
            with pytest.raises(ClientGaveUp) as spoofed:
                await _open(deployed, local_addr=("127.0.0.2", 0), headers={"X-Forwarded-For": "127.0.0.4"})
            assert "HTTP 429" in spoofed.value.reason, spoofed.value.reason
        finally:
            await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        with contextlib.suppress(Exception):
            deployed.stop_nginx()
        logs = deployed.worker_logs()
    refusals = re.findall(r'(\S+) - "WebSocket /ws\S*" refused by ConnectionLimitMiddleware: 429', logs)
    assert refusals and set(refusals) == {"127.0.0.2:0"}, logs
    accepted = set(re.findall(r'(\S+):\d+ - "WebSocket /ws\S*" \[accepted\]', logs))
    assert accepted == {"127.0.0.2", "127.0.0.3"}, logs
