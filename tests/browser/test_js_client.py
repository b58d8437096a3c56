"""The JavaScript client (clients/js, served as /asgi-ws.js) in a real Chromium, against real servers.

A half-open socket (the network gone, the socket still "open"), a page reload, binary frames
through a drop, and a ticket refreshed on 4401. Every wait is bounded and says what did not happen.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgi_ws import AuthMiddleware, HeartbeatMiddleware, PubSubApp, ResumeMiddleware
from asgi_ws.auth import SignedTicket
from asgi_ws.types import Receive, Scope, Send
from tests.support.clients import opened
from tests.support.pages import with_browser_client
from tests.support.procs import asgi_ws_serve
from tests.support.server import serve

WAIT = 10_000  # ms, any one step
KEYS = {"ASGI_WS_RESUME_KEYS": "js-client-browser-test-key"}


async def open_page(browser: Any, url: str, script: str) -> Any:
    """A page of the server at ``url`` (any path: a 404 is fine) that loads the served client, then runs ``script``.

    The document must come from the server itself: Chromium blocks sockets to loopback from a
    page whose origin it cannot place there (a document made up by the test, about:blank).
    """
    page = await browser.new_page()
    await page.goto(url)
    await load(page, script)
    return page


async def load(page: Any, script: str) -> None:
    """What the page's own script tags would do: load /asgi-ws.js, then run ``script``."""
    await page.add_script_tag(url="/asgi-ws.js")
    await page.add_script_tag(content=script)
    await page.wait_for_function("typeof window.client === 'object'", timeout=WAIT)


async def wait_until(page: Any, expression: str, what: str, arg: Any = None) -> None:
    try:
        await page.wait_for_function(expression, arg=arg, timeout=WAIT)
    except Exception:
        state = await page.evaluate("({got: window.got, events: window.events, state: window.client.state})")
        raise AssertionError(f"{what} within {WAIT} ms; the page: {json.dumps(state)[:2000]}") from None


@asynccontextmanager
async def publisher(server: Any) -> AsyncIterator[Any]:
    """A raw socket publishing on ``news`` (same origin as the page: asgi-ws serve allows it)."""
    async with opened(server.ws_url("/ws"), origin=f"http://127.0.0.1:{server.port}", ping_interval=None) as ws:

        async def publish(*numbers: int) -> None:
            for i in numbers:
                await ws.send(json.dumps({"$ws": "publish", "channel": "news", "data": i}))

        yield publish


RECORDING = """
window.got = [];
window.events = [];
const record = (kind) => (detail) => window.events.push([kind, detail]);
for (const kind of ["close", "resumed", "resume_failed", "session_lost", "session"]) client.on(kind, record(kind));
client.on("message", ({data}) => window.got.push(data));
client.subscribe("news").then(() => { window.subscribed = true; });
window.client = client;
"""

OFFLINE_CLIENT = (
    """
const client = new AsgiWs("/ws", {pingInterval: 0.5, pingTimeout: 1, openTimeout: 2, backoff: {base: 0.2, cap: 0.5}});
"""
    + RECORDING
    + "client.connect();"
)


async def test_offline_longer_than_the_heartbeat_timeout_half_open_detected_and_resumed_with_nothing_lost(
    browser: Any,
) -> None:
    """CDP takes the page offline: frames are held both ways while the socket stays "open" (half-open).
    The client's own ping goes unanswered, it leaves the socket (4408) while still offline, retries
    until the network is back, and resumes: what was published meanwhile arrives once, in order."""
    with asgi_ws_serve("--heartbeat-interval", "1", env=KEYS) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await open_page(browser, f"{base}/offline", OFFLINE_CLIENT)
        await wait_until(page, "window.subscribed === true", "the page subscribed")
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.enable")
        async with publisher(server) as publish:
            await publish(*range(5))
            await wait_until(page, "window.got.length >= 5", "the first 5 messages arrived")
            session = await page.evaluate("window.client.session.id")
            conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
            await cdp.send("Network.emulateNetworkConditions", {"offline": True, **conditions})
            await publish(*range(5, 15))  # held by the dead network: the page never sees them on this socket
            await wait_until(
                page,
                "window.events.some(([k, d]) => k === 'close' && d.code === 4408)",
                "the client noticed the half-open socket (its ping unanswered)",
            )
            await asyncio.sleep(1.5)  # offline past the server's heartbeat timeout (1 s) too
            await cdp.send("Network.emulateNetworkConditions", {"offline": False, **conditions})
            await wait_until(page, "window.got.length >= 15", "the missed messages were replayed")
            await publish(15)
            await wait_until(page, "window.got.length >= 16", "a live message after the resume")
        got = await page.evaluate("window.got")
        events = await page.evaluate("window.events.map(([k, d]) => [k, d.code ?? null, d.replay ?? null])")
        assert got == list(range(16)), got  # nothing lost, nothing twice, in order
        closes = [e for e in events if e[0] == "close"]
        assert closes[0][1] == 4408, events
        reason = await page.evaluate("window.events.find(([k]) => k === 'close')[1].reason")
        assert reason == "heartbeat timeout (client)"
        assert [e for e in events if e[0] == "resumed"] == [["resumed", None, 10]], events
        assert not [e for e in events if e[0] in ("resume_failed", "session_lost")], events
        assert await page.evaluate("window.client.session.id") == session
        await page.close()


RELOADING_CLIENT = (
    """
const client = new AsgiWs("/ws", {persist: true, pingInterval: 0});
"""
    + RECORDING
)


async def test_a_reloaded_page_resumes_its_session_from_session_storage(browser: Any) -> None:
    with asgi_ws_serve(env=KEYS) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await open_page(browser, f"{base}/reload", RELOADING_CLIENT)
        await page.evaluate("window.client.connect()")
        await wait_until(page, "window.subscribed === true", "the page subscribed")
        session = await page.evaluate("window.client.session.id")
        async with publisher(server) as publish:
            await publish(*range(10))
            await wait_until(page, "window.got.length >= 10", "10 messages before the reload")
            await page.reload()  # pagehide writes the session to sessionStorage
            await load(page, RELOADING_CLIENT)  # the new page takes it
            assert await page.evaluate("window.client.session && window.client.session.id") == session
            assert await page.evaluate("window.client.received") == 10
            assert await page.evaluate("sessionStorage.length") == 0  # taken: a duplicated tab would start anew
            await publish(*range(10, 20))  # while no page holds the session
            await page.evaluate("window.client.connect()")
            await wait_until(page, "window.got.length >= 10", "what was published during the reload")
            await publish(20)
            await wait_until(page, "window.got.length >= 11", "a live message")
        assert await page.evaluate("window.got") == list(range(10, 21))
        events = await page.evaluate("window.events.map(([k, d]) => [k, d.replay ?? null])")
        assert events[0] == ["resumed", 10], events
        assert "resume_failed" not in [k for k, _ in events]
        assert await page.evaluate("window.subscribed") is True  # the room came back with the session
        await page.close()


class BinaryEcho:
    """Echoes every frame; counts the connections."""

    def __init__(self) -> None:
        self.connections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        self.connections += 1
        while (message := await receive())["type"] == "websocket.receive":
            await send({**message, "type": "websocket.send"})


BINARY_CLIENT = """
window.got = [];
window.events = [];
const client = new AsgiWs("/ws", {pingInterval: 0, backoff: {base: 0.05, cap: 0.1}});
client.on("raw", (data) => window.got.push(data instanceof ArrayBuffer ? Array.from(new Uint8Array(data)) : data));
client.on("resumed", (m) => window.events.push(["resumed", m]));
client.on("close", (d) => window.events.push(["close", d]));
window.client = client;
"""

SEND_WHILE_AWAY = """
() => {
  const every = new Uint8Array(256).map((_, i) => i);
  window.client.send(every);                     // open: written now
  window.client.ws.close(4000, "test: a drop");   // not a 1000: the session stays resumable
  window.queued = [window.client.send(new Uint8Array([9, 8, 7]).buffer), window.client.send("text too")];
  window.client.send(new Uint8Array(0));
}
"""


async def test_binary_frames_round_trip_and_wait_in_the_queue_through_a_drop(browser: Any) -> None:
    echo = BinaryEcho()
    app = ResumeMiddleware(HeartbeatMiddleware(echo, interval=5, timeout=5), secret_keys=[secrets.token_urlsafe(32)])
    async with serve(with_browser_client(app)) as server:
        page = await open_page(browser, server.http_url("/binary"), BINARY_CLIENT)
        # The drop must come after the session's token (it follows the open): without it the
        # client could only start a new session, and the first echo would be the old one's.
        await page.evaluate("new Promise((ok) => { window.client.on('session', ok); window.client.connect(); })")
        await page.evaluate(SEND_WHILE_AWAY)
        await wait_until(page, "window.got.length >= 4", "4 frames echoed")
        got = await page.evaluate("window.got")
        queued = await page.evaluate("window.queued")
        events = await page.evaluate("window.events.map(([k, d]) => [k, d.code ?? d.replay ?? null])")
    assert queued == [False, False]  # while reconnecting: queued, not written
    assert got == [list(range(256)), [9, 8, 7], "text too", []]
    assert [kind for kind, _ in events[:2]] == ["close", "resumed"], events  # (the first echo before or after)
    assert echo.connections == 2


TICKET_CLIENT = """
window.got = [];
window.events = [];
window.tickets = 0;
const ticket = async () => { window.tickets += 1; return (await fetch("/ticket")).text(); };
const client = new AsgiWs("/ws", {ticket, pingInterval: 0, backoff: {base: 0.05, cap: 0.1}});
client.on("message", ({data}) => window.got.push(data));
for (const kind of ["close", "resumed", "resume_failed", "open"]) client.on(kind, (d) => window.events.push([kind, d]));
window.client = client;
"""


async def test_a_ticket_is_fetched_again_after_4401_and_the_session_resumes(browser: Any) -> None:
    tickets = SignedTicket([secrets.token_urlsafe(32)], max_age=30, connection_max_age=1.5)
    pubsub = PubSubApp(echo=True)  # the page's own publishes come back to it
    resume = ResumeMiddleware(
        HeartbeatMiddleware(pubsub, interval=5, timeout=5), secret_keys=[secrets.token_urlsafe(32)], rooms=pubsub.rooms
    )
    app = AuthMiddleware(resume, backend=tickets)

    async def with_tickets(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/ticket":
            body = tickets.issue("alice").encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
        else:
            await with_browser_client(app)(scope, receive, send)

    async with serve(with_tickets) as server:
        page = await open_page(browser, server.http_url("/tickets"), TICKET_CLIENT)
        await page.evaluate(
            "window.client.connect().subscribe('news').then(() => window.client.publish('news', 'before'))"
        )
        await wait_until(page, "window.got.length >= 1", "the page's own publish came back")
        await wait_until(
            page,
            "window.events.some(([k, d]) => k === 'close' && d.code === 4401)",
            "the server closed the connection whose ticket aged past connection_max_age",
        )
        await wait_until(page, "window.events.some(([k]) => k === 'resumed')", "the session resumed with a new ticket")
        await page.evaluate("window.client.publish('news', 'after')")
        await wait_until(page, "window.got.length >= 2", "a publish after the 4401")
        got = await page.evaluate("window.got")
        events = await page.evaluate("window.events.map(([k, d]) => [k, d.code ?? null])")
        fetched = await page.evaluate("window.tickets")
    await resume.close()
    await pubsub.rooms.close()
    assert got == ["before", "after"]
    assert events[:4] == [["open", None], ["close", 4401], ["open", None], ["resumed", None]], events
    opens = events.count(["open", None])
    assert opens <= fetched <= opens + 1, (fetched, events)  # a fresh ticket per attempt (the next may be on its way)
