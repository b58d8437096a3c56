"""What a real server writes, with its default logging, under each uvicorn WebSocket implementation.

Read from the child process's own stderr and stdout, never through a handler of the test:

- ``uvicorn tests.support.log_apps:app`` (no log option at all) refuses a handshake for every
  documented reason (origin 403, auth 401/503, subprotocol 400, caps 429/503, drain 503) and
  closes for every library policy (1008, 1009, 1013, 4401, 4408, 4409, 4410, 1001): no
  ``ERROR`` and no ``Traceback`` (uvicorn's ``websockets-sansio`` logs "ASGI callable returned
  without completing handshake." at ERROR after each denial response: dropped), the ticket,
  token and resume token values appear nowhere (masked by default), and asgi_ws's own
  refusal lines are there in uvicorn's format, with their cause.
- ``uvicorn.run(app)``, which configures logging after the middlewares were built: the same.
- ``asgi-ws serve --metrics`` (its default log level): the same, a flood of 500 handshakes over
  the connection cap logs two lines, the second with the count, and ``/metrics`` counts every
  refusal by middleware, status and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.middleware.test_handshake_input import handshake_status
from tests.support.clients import Refusal, open_or_refusal, opened, refusal
from tests.support.log_apps import ORIGIN, SUBPROTOCOL
from tests.support.procs import free_port, server_process
from tests.support.server import WS_IMPLS
from tests.test_close_paths import CLOSE_PATHS, TICKETS, closed_with, open_client, trigger

pytestmark = pytest.mark.e2e

SECRET_TOKEN = "SECRET-TOKEN-0451"
BAD = re.compile(r"ERROR|Traceback|CRITICAL")


class Logs:
    """The stderr and stdout of a server process, read once it exited."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.err = self.out = ""

    def read(self) -> None:
        self.err = (self.where / "stderr").read_text(errors="replace")
        self.out = (self.where / "stdout").read_text(errors="replace")

    def check_clean(self, *secrets: str) -> None:
        for name, text in (("stderr", self.err), ("stdout", self.out)):
            bad = [line for line in text.splitlines() if BAD.search(line)]
            assert not bad, f"the server's {name} has errors:\n" + "\n".join(bad) + f"\n--- {name}:\n{text}"
            for secret in secrets:
                assert secret not in text, f"{secret[:12]}... is in the server's {name}:\n{text}"


@contextlib.contextmanager
def child(cmd: list[str], port: int, where: Path) -> Iterator[Logs]:
    logs = Logs(where)
    with open(where / "stderr", "wb") as err, open(where / "stdout", "wb") as out:
        with server_process(cmd, port, stderr=err, stdout=out):
            yield logs
    logs.read()


def uvicorn_cli(ws: str, port: int) -> list[str]:
    """``uvicorn tests.support.log_apps:app`` with nothing but where to listen and the implementation."""
    return [sys.executable, "-m", "uvicorn", "tests.support.log_apps:app", "--host", "127.0.0.1",
            "--port", str(port), "--ws", ws]  # fmt: skip


def uvicorn_run(ws: str, port: int) -> list[str]:
    """``uvicorn.run(app)``: the middlewares exist before uvicorn configures logging."""
    code = (
        "import sys, uvicorn\n"
        "from tests.support.log_apps import app\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), ws=sys.argv[2])\n"
    )
    return [sys.executable, "-c", code, str(port), ws]


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


async def status(url: str, **kwargs: Any) -> tuple[int, str]:
    refused = await refusal(url, **kwargs)
    return refused.status, refused.body


async def library_close(base: str, name: str) -> int | None:
    path = next(p for p in CLOSE_PATHS if p.name == name)
    query = f"?ticket={TICKETS.issue('ada', expires_at=time.time() + 0.5)}" if name == "credentials_expired" else ""
    ws = await open_client(f"{base}/close/{name}{query}", slow=name == "slow_consumer")
    await trigger(path, ws)
    return (await closed_with(ws))[0]


async def takeover(base: str) -> tuple[int | None, str]:
    """A resumed session closes its old socket with 4409; returns that code and the token used."""
    first = await open_client(f"{base}/resume?ws_resume=new")
    token = json.loads(await asyncio.wait_for(first.recv(), 5))["token"]
    async with await open_client(f"{base}/resume?ws_resume={token}&ws_seq=0") as second:
        assert json.loads(await asyncio.wait_for(second.recv(), 5))["$ws"] == "resumed"
        return (await closed_with(first))[0], token


async def reopened(url: str, **kwargs: Any) -> Any:
    """A connection once the cap has room again (the previous application may still be ending)."""
    for _ in range(50):
        result = await open_or_refusal(url, **kwargs)
        if not isinstance(result, Refusal):
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} still refused: {result}")


async def every_refusal_and_close(port: int) -> list[str]:
    """Drive each documented refusal and library close; returns the credentials that were sent."""
    base = f"ws://127.0.0.1:{port}"
    ticket = TICKETS.issue("alice")
    good = {"origin": ORIGIN, "subprotocols": [SUBPROTOCOL]}
    assert await status(f"{base}/ws?ticket={ticket}", origin="https://evil.example", subprotocols=[SUBPROTOCOL]) == (
        403,
        "origin not allowed",
    )
    assert (await status(f"{base}/ws", **good))[0] == 401
    assert await status(f"{base}/ws?ticket=forged.ticket.value", **good) == (401, "invalid ticket")
    assert await status(f"{base}/ws?token={SECRET_TOKEN}", **good) == (503, "authentication backend unavailable")
    assert (await status(f"{base}/ws?ticket={ticket}", origin=ORIGIN, subprotocols=["mqtt"]))[0] == 400
    async with opened(f"{base}/ws?ticket={ticket}&room=lobby", **good) as held:
        assert json.loads(await held.recv())["user"] == "alice"
        assert await status(f"{base}/ws?ticket={ticket}", **good) == (429, "too many connections for this user")
    async with opened(f"{base}/cap-ip"):
        assert await status(f"{base}/cap-ip") == (429, "too many connections from this address")
    async with opened(f"{base}/cap"):
        assert await status(f"{base}/cap") == (503, "server at its connection limit")
    names = [path.name for path in CLOSE_PATHS]
    *codes, (replaced, resume_token) = await asyncio.gather(
        *(library_close(base, name) for name in names), takeover(base)
    )
    assert dict(zip(names, codes, strict=True)) == {path.name: path.expected for path in CLOSE_PATHS}
    assert replaced == 4409
    async with opened(f"{base}/cap") as last:
        await last.recv()
        assert (await asyncio.to_thread(get, port, "/drain")).startswith("drained ")
        assert (await closed_with(last))[0] == 1001
    assert await status(f"{base}/cap") == (503, "server shutting down")
    return [ticket, SECRET_TOKEN, resume_token]


@pytest.mark.parametrize(
    ("launch", "ws_impl"),
    [
        *((uvicorn_cli, impl) for impl in WS_IMPLS),
        (uvicorn_run, "websockets-sansio"),  # the launch order matters to logging, not the implementation
    ],
    ids=[*(f"uvicorn app:app-{impl}" for impl in WS_IMPLS), "uvicorn.run(app)-websockets-sansio"],
)
async def test_plain_uvicorn_logs_no_error_no_secret_and_the_librarys_refusals(
    launch: Any, ws_impl: str, tmp_path: Path
) -> None:
    port = free_port()
    with child(launch(ws_impl, port), port, tmp_path) as logs:
        secrets = await every_refusal_and_close(port)
    logs.check_clean(*secrets)
    assert "WebSocket /ws?ticket=[redacted]&room=lobby" in logs.err  # uvicorn's own line, masked
    assert "WebSocket /resume?ws_resume=[redacted]&ws_seq=0" in logs.err
    # asgi_ws's lines reach uvicorn's stream in its format: level, client, path, who, status, cause.
    for line in (
        r'INFO: +127\.0\.0\.1:\d+ - "WebSocket /ws" refused by OriginMiddleware: 403 origin not allowed '
        r"\(Origin 'https://evil\.example'\)",
        r"INFO: +.* refused by AuthMiddleware: 401 invalid ticket \(backend 'ticket': bad signature or format\)",
        r"WARNING: +.* refused by AuthMiddleware: 503 authentication backend unavailable "
        r"\(backend 'query token' raised ConnectionRefusedError\)",
        r"INFO: +.* refused by SubprotocolMiddleware: 400 ",
        r"INFO: +.* refused by ConnectionLimitMiddleware: 429 too many connections from this address",
        r"WARNING: +.* refused by ConnectionLimitMiddleware: 503 server at its connection limit",
        r'WARNING: +.* - "WebSocket /cap" refused by asgi_ws drain: 503 server shutting down',
        r'INFO: +.* - "WebSocket /ws" closed by asgi_ws: 1009 ',
        r'INFO: +.* - "WebSocket /ws" closed by asgi_ws: 4408 ',
    ):
        assert re.search(line, logs.err), f"{line!r} not in the server's log:\n{logs.err}"


async def test_asgi_ws_serve_logs_no_error_aggregates_a_flood_and_counts_refusals(ws_impl: str, tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "asgi_ws.cli", "serve", "--port", str(port), "--ws", ws_impl, "--metrics",
           "--max-connections", "1", "--max-message-size", "1000", "--heartbeat-interval", "0.3"]  # fmt: skip
    base, same_origin = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    with child(cmd, port, tmp_path) as logs:
        assert (await status(f"{base}/ws", origin="https://evil.example"))[0] == 403
        assert (await status(f"{base}/elsewhere", origin=same_origin))[0] == 404
        async with opened(f"{base}/ws?ws_resume=new", origin=same_origin) as held:
            session = json.loads(await held.recv())
            assert await status(f"{base}/ws", origin=same_origin) == (503, "server at its connection limit")
            flood = await asyncio.to_thread(lambda: [handshake_status(port, b"/ws", []) for _ in range(500)])
            assert set(flood) == {503}
            await held.send("x" * 2000)
            assert (await closed_with(held))[0] == 1009
        async with await reopened(f"{base}/ws", origin=same_origin) as silent:
            await silent.send(json.dumps({"$ws": "hello", "v": 1}))  # opted in, never answers a ping
            assert (await closed_with(silent))[0] == 4408
        metrics = await asyncio.to_thread(get, port, "/metrics")
    logs.check_clean(session["token"])
    for sample in (
        'asgi_ws_handshakes_refused_total{reason="origin not allowed",refused_by="OriginMiddleware",status="403"} 1.0',
        'asgi_ws_library_closes_total{code="1009"} 1.0',
        'asgi_ws_library_closes_total{code="4408"} 1.0',
    ):
        assert sample in metrics, f"{sample} not in /metrics:\n{metrics}"
    assert re.search(r'asgi_ws_handshakes_refused_total\{reason="no WebSocket endpoint here[^"]*",'
                     r'refused_by="asgi-ws serve",status="404"\} 1\.0', metrics)  # fmt: skip
    found = re.search(r'asgi_ws_handshakes_refused_total\{reason="server at its connection limit",'
                      r'refused_by="ConnectionLimitMiddleware",status="503"\} (\d+)\.0', metrics)  # fmt: skip
    assert found, metrics
    refused = int(found[1])  # 501, and one more if reopening found the cap still held
    assert refused in (501, 502)
    capped = [line for line in logs.err.splitlines() if "server at its connection limit" in line]
    assert len(capped) == 2, "\n".join(capped)  # the first at once, all the others in one line (at exit)
    assert capped[0].startswith("WARNING:") and "more like this" not in capped[0]
    assert re.search(rf"\({refused - 2} more like this in the last [\d.]+ s\)$", capped[1]), capped[1]
    assert "WebSocket /ws?ws_resume=[redacted]" in logs.err
