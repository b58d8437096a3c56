"""``asgi-ws serve``, the main job: the page, the client script, the protected endpoint."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asgi_ws import __version__ as asgi_ws_version
from asgi_ws.cli import _parser, build_app, parse_args
from tests.support.clients import opened, recv_json_until, refusal
from tests.support.procs import asgi_ws_serve, free_port, wait_for_port
from tests.support.server import serve


def test_defaults() -> None:
    args = parse_args(["serve"])
    assert (args.broker, args.host, args.port, args.path) == ("memory://?history=1000", "127.0.0.1", 8000, "/ws")
    assert (args.resume_window, args.session_store) == (120.0, "memory://")
    assert parse_args(["serve", "--allow-origin", "https://a.io", "--allow-origin", "https://b.io"]).allow_origin == [
        "https://a.io",
        "https://b.io",
    ]


async def test_routes_origin_and_pubsub_in_process() -> None:
    async with serve(build_app(), lifespan="on") as server:
        async with httpx.AsyncClient() as client:
            page = await client.get(server.http_url("/"))
            script = await client.get(server.http_url("/asgi-ws.js"))
            missing = await client.get(server.http_url("/nope"))
        assert page.status_code == 200 and "asgi_ws pub/sub demo" in page.text
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "globalThis.AsgiWs = AsgiWs" in script.text and missing.status_code == 404
        same = f"http://127.0.0.1:{server.port}"
        async with opened(server.ws_url("/ws"), origin=same, ping_interval=None) as conn:
            await conn.send(json.dumps({"$ws": "hello", "v": 1}))
            features = json.loads(await conn.recv())["features"]
            assert set(features) == {"heartbeat", "pubsub", "batch"}
        assert (await refusal(server.ws_url("/ws"), origin="https://evil.example")).status == 403
        wrong = await refusal(server.ws_url("/elsewhere"), origin=same)
        assert (wrong.status, wrong.body) == (404, "no WebSocket endpoint here; try /ws")


async def test_metrics_endpoint() -> None:
    async with serve(build_app(metrics=True), lifespan="on") as server:
        async with opened(server.ws_url("/ws"), origin=f"http://127.0.0.1:{server.port}", ping_interval=None) as conn:
            await conn.send(json.dumps({"$ws": "subscribe", "channel": "c"}))
            await conn.recv()
            async with httpx.AsyncClient() as client:
                text = (await client.get(server.http_url("/metrics"))).text
        assert 'asgi_ws_rooms_local_members{namespace="asgi_ws"} 1.0' in text
        assert "process_resident_memory_bytes" in text


async def test_no_demo_serves_no_page() -> None:
    async with serve(build_app(demo=False)) as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.http_url("/"))).status_code == 404


async def test_the_command_serves_the_demo_and_the_endpoint() -> None:
    with asgi_ws_serve("--allow-origin", "https://app.example.com") as server:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        async with (
            opened(server.ws_url("/ws"), origin="https://app.example.com", ping_interval=None) as a,
            opened(server.ws_url("/ws"), origin="https://app.example.com", ping_interval=None) as b,
        ):
            for conn in (a, b):
                await conn.send(json.dumps({"$ws": "subscribe", "channel": "lobby"}))
                assert json.loads(await conn.recv())["$ws"] == "subscribed"
            await a.send(json.dumps({"$ws": "publish", "channel": "lobby", "data": "from the cli"}))
            assert json.loads(await b.recv()) == {"channel": "lobby", "data": "from the cli"}


# -- the command as a user runs it: one line on stderr and a status, never a traceback ------------

#: The ``asgi-ws`` script the install created, beside this interpreter (scripts/bootstrap's .venv).
ASGI_WS = shutil.which("asgi-ws", path=str(Path(sys.executable).parent)) or "asgi-ws"

#: A ``sitecustomize`` that makes the modules named in ASGI_WS_TEST_MISSING impossible to import,
#: as on a machine where the extra was not installed.
WITHOUT_MODULES = """
import os, sys

class Missing:
    names = set(os.environ["ASGI_WS_TEST_MISSING"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
"""


def asgi_ws(*args: str, missing: str = "", tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``asgi-ws`` command until it exits; ``missing``: modules it cannot import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_WS_")}
    if missing:
        assert tmp_path is not None
        (tmp_path / "sitecustomize.py").write_text(WITHOUT_MODULES)
        env.update(PYTHONPATH=str(tmp_path), ASGI_WS_TEST_MISSING=missing)
    return subprocess.run([ASGI_WS, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version() -> None:
    result = asgi_ws("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"asgi-ws {asgi_ws_version}")


def test_every_option_says_its_default() -> None:
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    formatter = serve._get_formatter()
    options = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert {"--allow-missing-origin", "--log-level", "--broker"} <= {a.option_strings[0] for a in options}
    for action in options:
        help_text = formatter._expand_help(action) if action.help else ""
        assert "default" in help_text, action.option_strings
    result = asgi_ws("serve", "--help")
    assert result.returncode == 0 and "(default: memory://?history=1000)" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--broker", "foo://x"], "error: unknown broker URL scheme 'foo'"),
        (["--session-store", "foo://"], "error: unknown session store URL scheme 'foo'"),
        (["--log-level", "loud"], "error: argument --log-level: invalid choice: 'loud'"),
        (["--port", "eighty"], "error: argument --port: invalid int value: 'eighty'"),
        (["--allow-origin", "app.example.com"], "error: allow_origins entry 'app.example.com' is not an origin"),
        (["--workers", "2"], "error: --workers needs a broker the processes share"),
        (["--workers", "0"], "error: --workers must be at least 1"),
        (["--nope"], "error: unrecognized arguments: --nope"),
    ],
)
def test_a_command_line_that_cannot_work_is_one_line_and_status_2(args: list[str], says: str) -> None:
    result = asgi_ws("serve", *args)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(("asgi-ws serve: error: ", "asgi-ws: error: ")) and says in line


def test_uvicorn_protocol_pings_default_to_20_s_and_0_turns_them_off() -> None:
    assert parse_args(["serve"]).ws_ping_interval == 20.0
    assert parse_args(["serve", "--ws-ping-interval", "0"]).ws_ping_interval == 0.0


def test_log_level_is_case_insensitive() -> None:
    assert parse_args(["serve", "--log-level", "WARNING"]).log_level == "warning"


@pytest.mark.parametrize(
    ("args", "missing", "install"),
    [
        (["--broker", "redis://127.0.0.1:6379/0"], "redis", "asgi-ws[redis]"),
        (["--broker", "postgres://127.0.0.1/db"], "asyncpg", "asgi-ws[postgres]"),
        (["--broker", "nats://127.0.0.1:4222"], "nats", "asgi-ws[nats]"),
        (["--broker", "amqp://127.0.0.1/"], "aio_pika", "asgi-ws[amqp]"),
        (["--session-store", "redis://127.0.0.1:6379/0"], "redis", "asgi-ws[redis]"),
        (["--metrics"], "prometheus_client", "asgi-ws[metrics]"),
        ([], "uvicorn", "asgi-ws[server]"),
    ],
)
def test_a_missing_package_names_the_extra_to_install(
    args: list[str], missing: str, install: str, tmp_path: Path
) -> None:
    result = asgi_ws("serve", "--port", str(free_port()), *args, missing=missing, tmp_path=tmp_path)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("asgi-ws serve: ") and f"pip install '{install}'" in line


def test_a_broker_that_cannot_be_reached_fails_before_uvicorn_starts() -> None:
    broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = asgi_ws("serve", "--port", str(free_port()), "--broker", broker)
    assert result.returncode == 1
    assert one_line(result).startswith(f"asgi-ws serve: cannot connect to Redis at {broker}: ")


def test_a_session_store_that_cannot_be_reached_fails_before_uvicorn_starts() -> None:
    port = free_port()  # nothing listens there
    result = asgi_ws("serve", "--port", str(free_port()), "--session-store", f"redis://:secret@127.0.0.1:{port}/0")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"asgi-ws serve: cannot reach the session store at redis://:***@127.0.0.1:{port}/0: ")
    assert "secret" not in line


def test_a_port_in_use_fails_before_uvicorn_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = asgi_ws("serve", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result).startswith(f"asgi-ws serve: cannot listen on 127.0.0.1:{port}: ")


async def test_allow_missing_origin_lets_non_browser_clients_in() -> None:
    assert parse_args(["serve"]).allow_missing_origin is False
    async with serve(build_app(), lifespan="on") as server:
        refused = await refusal(server.ws_url("/ws"))  # no Origin header
        assert (refused.status, refused.body) == (403, "missing Origin header")
    with asgi_ws_serve("--allow-any-origin", "--allow-missing-origin") as server:
        for origin in (None, "https://anywhere.example"):
            async with opened(server.ws_url("/ws"), origin=origin, ping_interval=None) as conn:
                await conn.send(json.dumps({"$ws": "subscribe", "channel": "lobby"}))
                assert json.loads(await conn.recv())["$ws"] == "subscribed"


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def _served_by_every_worker(url: str, count: int) -> None:
    """``count`` subscribers on the port; a publish of one reaches the others (whichever worker holds them)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(opened(url)) for _ in range(count)]
        for ws in clients:
            await ws.send(json.dumps({"$ws": "subscribe", "channel": "lobby"}))
            await recv_json_until(ws, lambda m: m.get("$ws") == "subscribed", what="subscribed")
        for attempt in range(40):  # each worker's Redis subscription lands asynchronously
            await clients[0].send(json.dumps({"$ws": "publish", "channel": "lobby", "data": attempt}))
            try:
                for ws in clients[1:]:
                    await recv_json_until(ws, lambda m: m.get("channel") == "lobby", timeout=0.5, what="a publish")
                return
            except AssertionError:
                continue
        raise AssertionError("a publish never reached every subscriber")


@pytest.mark.timeout(120)
async def test_workers_share_one_port_a_dead_one_is_restarted_and_sigterm_drains_them_all(redis_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_WS_")}
    namespace = f"workers{os.getpid()}"
    proc = subprocess.Popen(  # noqa: ASYNC220 - the supervisor under test
        [ASGI_WS, "serve", "--workers", "2", "--port", str(port), "--broker", redis_url, "--session-store",
         redis_url, "--namespace", namespace, "--allow-missing-origin", "--log-level", "warning"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_port, port, 60, proc)
        deadline = time.monotonic() + 30
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) == 2
        await _served_by_every_worker(f"ws://127.0.0.1:{port}/ws", 8)
        os.kill(min(workers), signal.SIGKILL)  # a worker dies: the supervisor starts another
        while len(_children(proc.pid) - {min(workers)}) < 2 and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.1)
        assert len(_children(proc.pid) - workers) == 1
        await _served_by_every_worker(f"ws://127.0.0.1:{port}/ws", 8)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert "exited with status -9: restarting it" in stderr and "Traceback" not in stderr, stderr
