"""The clients proven against each other: the JavaScript client in Chromium and in Node.js, and the
Python client, in one room through two ``asgi-ws serve`` processes on Redis (broker with history,
shared session store, the same resume keys). Each publishes; each receives every other's messages
once, in order; then the server holding the Python client (and the page) is killed and both
resume on the other one, missing nothing that was published meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from typing import Any

from asgi_ws.client import Backoff, Event, connect
from tests.support.js import ESM, prepared
from tests.support.procs import ROOT, asgi_ws_serve, free_port

WAIT = 15.0  # seconds, any one step
ROOM = "interop"
PER_PHASE = 5


PAGE = """
([urls, room]) => new Promise((resolve) => {
  window.got = [];
  window.events = [];
  const client = new AsgiWs(urls, {pingInterval: 1, pingTimeout: 2, backoff: {base: 0.05, cap: 0.3}});
  client.on("message", ({data}) => window.got.push(data));
  for (const kind of ["close", "resumed", "resume_failed", "session_lost"]) {
    client.on(kind, (d) => window.events.push([kind, d.code ?? d.replay ?? null]));
  }
  window.client = client;
  client.connect().subscribe(room).then(() => resolve(true));
})
"""


class NodeClient:
    """The Node.js client process (tests/js/interop_client.mjs) and what it reported."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.got: list[Any] = []
        self.events: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.published = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            if event["event"] == "message":
                self.got.append(event["data"])
            elif event["event"] == "ready":
                self.ready.set()
            elif event["event"] == "published":
                self.published += 1
            self.events.append(event)

    async def publish(self, data: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "publish", "data": data}).encode() + b"\n")
        await self.proc.stdin.drain()


async def until(what: str, predicate: Any, timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


def assert_once_in_order(got: list[Any], expected: dict[str, list[str]], who: str) -> None:
    """``got`` holds every message of the other clients exactly once, each sender's in its order."""
    wanted = sorted(m for messages in expected.values() for m in messages)
    assert sorted(got) == wanted, f"{who} got {got}, expected (in any interleaving) {wanted}"
    for sender, messages in expected.items():
        assert [m for m in got if m.startswith(sender)] == messages, f"{who}: {sender}'s messages out of order: {got}"


async def test_the_js_client_in_chromium_and_in_node_and_the_python_client_in_one_room_across_two_servers(
    browser: Any, redis_url: str
) -> None:
    prepared()  # the ES module Node.js imports
    tag = uuid.uuid4().hex[:8]
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"ws://127.0.0.1:{port_a}/ws", f"ws://127.0.0.1:{port_b}/ws"
    shared = (
        "--broker", f"{redis_url}?history=1000", "--session-store", f"{redis_url}?prefix=asgi_ws_interop_{tag}:",
        "--namespace", f"interop_{tag}", "--allow-missing-origin", "--heartbeat-interval", "2",
    )  # fmt: skip
    env = {"ASGI_WS_RESUME_KEYS": f"interop-key-{tag}"}
    # The page comes from A and may move to B: B allows A's origin.
    server_b = asgi_ws_serve(*shared, "--allow-origin", f"http://127.0.0.1:{port_a}", port=port_b, env=env)
    py_events: list[Event] = []
    with server_b, asgi_ws_serve(*shared, port=port_a, env=env) as server_a:
        python = await connect([url_a, url_b], backoff=Backoff(base=0.05, cap=0.3), on_event=py_events.append)
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port_a}/asgi-ws-interop")  # a 404 of A: the page's origin is A
        await page.add_script_tag(url="/asgi-ws.js")
        node_proc = await asyncio.create_subprocess_exec(
            "node", str(ROOT / "tests" / "js" / "interop_client.mjs"), str(ESM), ROOM, url_b, url_a,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=sys.stderr,
        )  # fmt: skip
        node = NodeClient(node_proc)
        py_got: list[Any] = []

        async def read_python() -> None:
            async for message in python:
                py_got.append(json.loads(message)["data"])

        py_reader = asyncio.create_task(read_python())
        try:
            await python.subscribe(ROOM)
            assert await asyncio.wait_for(page.evaluate(PAGE, [[url_a, url_b], ROOM]), WAIT)
            await asyncio.wait_for(node.ready.wait(), WAIT)
            assert node.events[0]["websocket"] in ("global", "ws package")

            async def page_got() -> list[Any]:
                return list(await page.evaluate("window.got"))

            # Phase 1: everyone on its server publishes.
            phase1 = {who: [f"{who}-{i}" for i in range(PER_PHASE)] for who in ("py", "js", "node")}
            for i in range(PER_PHASE):
                await python.publish(ROOM, phase1["py"][i])
                await page.evaluate("([room, data]) => window.client.publish(room, data)", [ROOM, phase1["js"][i]])
                await node.publish(phase1["node"][i])

            async def everyone_has_phase1() -> bool:
                return len(py_got) >= 10 and len(node.got) >= 10 and len(await page_got()) >= 10

            await until("every client received the other two's phase-1 messages", everyone_has_phase1)

            # A dies with no close frame: the Python client and the page move to B and resume there.
            server_a.proc.send_signal(signal.SIGKILL)
            server_a.proc.wait(10)
            phase2_node = [f"node-{i}" for i in range(PER_PHASE, 2 * PER_PHASE)]
            for data in phase2_node:  # published while they are away
                await node.publish(data)

            async def python_resumed() -> bool:
                return any(e.kind == "resumed" for e in py_events)

            async def page_resumed() -> bool:
                return bool(await page.evaluate("window.events.some(([k]) => k === 'resumed')"))

            await until("the Python client resumed its session on B", python_resumed)
            await until("the page resumed its session on B", page_resumed)
            later = range(PER_PHASE, 2 * PER_PHASE)
            phase2 = {"py": [f"py-{i}" for i in later], "js": [f"js-{i}" for i in later], "node": phase2_node}
            for i in range(PER_PHASE):
                await python.publish(ROOM, phase2["py"][i])
                await page.evaluate("([room, data]) => window.client.publish(room, data)", [ROOM, phase2["js"][i]])

            async def everyone_has_everything() -> bool:
                return len(py_got) >= 20 and len(node.got) >= 20 and len(await page_got()) >= 20

            await until("every client received every other client's messages", everyone_has_everything)
            await asyncio.sleep(0.3)  # a duplicate would arrive now
            everything = {who: phase1[who] + phase2[who] for who in phase1}
            assert_once_in_order(py_got, {w: m for w, m in everything.items() if w != "py"}, "the Python client")
            assert_once_in_order(node.got, {w: m for w, m in everything.items() if w != "node"}, "the Node client")
            assert_once_in_order(await page_got(), {w: m for w, m in everything.items() if w != "js"}, "the page")
            assert python.current_url is not None and python.current_url.startswith(url_b)
            assert not [e for e in py_events if e.kind in ("resume_failed", "session_lost")], py_events
            page_events = await page.evaluate("window.events")
            assert any(kind == "resumed" for kind, _ in page_events), page_events
            assert not [e for e in page_events if e[0] in ("resume_failed", "session_lost")], page_events
            assert not [e for e in node.events if e["event"] in ("close", "resume_failed")], node.events
        finally:
            py_reader.cancel()
            await python.close()
            if node_proc.returncode is None:
                node_proc.kill()
            await node_proc.wait()
            node.reader.cancel()
            await page.close()
