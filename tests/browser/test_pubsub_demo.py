"""The main job's demo page and the browser client (asgi-ws.js) in a real Chromium."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from typing import Any

from asgi_ws.cli import build_app
from tests.support.clients import opened
from tests.support.procs import asgi_ws_serve, free_port
from tests.support.server import serve


async def join(page: Any, url: str, name: str) -> None:
    await page.goto(url)
    await page.fill("#name", name)
    await page.click("#join button")
    await page.wait_for_function("document.getElementById('status').textContent.startsWith('open')")
    await page.wait_for_function("document.getElementById('messages').innerText.includes('joined lobby')")


async def test_two_pages_chat_and_see_each_other(browser: Any) -> None:
    async with serve(build_app(), lifespan="on") as server:
        alice, bob = await browser.new_page(), await browser.new_page()
        await join(alice, server.http_url("/"), "alice")
        await join(bob, server.http_url("/"), "bob")
        await alice.wait_for_function("document.getElementById('members').innerText.includes('bob')")
        assert "alice" in await bob.inner_text("#members") and "bob" in await bob.inner_text("#members")
        await alice.fill("#text", "hello bob")
        await alice.click("#say button")
        await bob.wait_for_function("document.getElementById('messages').innerText.includes('hello bob')")
        await bob.close()  # bob leaves: alice's presence list follows
        await alice.wait_for_function("!document.getElementById('members').innerText.includes('bob')")


async def test_the_client_reconnects_and_resubscribes_after_a_server_restart(browser: Any) -> None:
    port = free_port()
    page = await browser.new_page()
    with asgi_ws_serve(port=port) as server:
        await join(page, f"http://127.0.0.1:{port}/", "carol")
    # The server is gone: the page notices and keeps retrying with backoff.
    await page.wait_for_function("document.getElementById('messages').innerText.includes('connection lost')")
    with asgi_ws_serve(port=port) as server:
        await page.wait_for_function("document.getElementById('status').textContent.startsWith('open')", timeout=40_000)
        origin = f"http://127.0.0.1:{port}"
        async with opened(server.ws_url("/ws"), origin=origin, ping_interval=None) as conn:
            for _ in range(50):  # the page's resubscription may land just after its reconnection
                await conn.send(
                    json.dumps({"$ws": "publish", "channel": "lobby", "data": {"name": "srv", "text": "back"}})
                )
                try:
                    await page.wait_for_function(
                        "document.getElementById('messages').innerText.includes('back')", timeout=300
                    )
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the page never received a publish after reconnecting")


RESUMING_CLIENT = """
async () => {
  window.got = [];
  window.events = [];
  window.gate = Promise.resolve();
  const url = async () => { await window.gate; return "/ws"; };  // held closed while a test wants
  const client = new AsgiWs(url, {pingInterval: 0, backoff: {base: 0.05, cap: 0.2}});
  client.on("message", (msg) => window.got.push(msg.data));
  for (const kind of ["resumed", "resume_failed", "session_lost", "close"]) {
    client.on(kind, (detail) => window.events.push([kind, detail]));
  }
  client.subscribe("news");
  window.client = client;
  await new Promise((resolve) => { client.on("subscribed", resolve); client.connect(); });
}
"""


async def test_the_browser_client_resumes_and_misses_nothing_published_while_away(browser: Any) -> None:
    async with serve(build_app(), lifespan="on") as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.evaluate(RESUMING_CLIENT)
        origin = f"http://127.0.0.1:{server.port}"
        async with opened(server.ws_url("/ws"), origin=origin, ping_interval=None) as publisher:

            async def publish(*numbers: int) -> None:
                for i in numbers:
                    await publisher.send(json.dumps({"$ws": "publish", "channel": "news", "data": i}))

            await publish(*range(10))
            await page.wait_for_function("window.got.length >= 10")
            # The connection drops (not a close 1000): the page cannot reconnect until released.
            await page.evaluate(
                "window.gate = new Promise((r) => { window.release = r; }); window.client.ws.close(4000)"
            )
            await page.wait_for_function("window.events.some(([kind]) => kind === 'close')")
            await publish(*range(10, 30))  # published while the page is away
            await page.evaluate("window.release()")
            await page.wait_for_function("window.got.length >= 30")
            await publish(30)
            await page.wait_for_function("window.got.length >= 31")
        assert await page.evaluate("window.got") == list(range(31))
        kinds = await page.evaluate("window.events.map(([kind, detail]) => [kind, detail.room_gap ?? null])")
        assert kinds == [["close", None], ["resumed", False]]


async def test_the_browser_client_starts_a_new_session_when_the_store_lost_its_own(
    browser: Any, redis_url: str
) -> None:
    from redis.asyncio import Redis

    prefix = f"asgi_ws_browser_{uuid.uuid4().hex[:8]}:"
    app = build_app(session_store=f"{redis_url}?prefix={prefix}", resume_keys=["browser-test-key"])
    async with serve(app, lifespan="on", graceful=True) as server:  # the lifespan shutdown closes the store
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.evaluate(RESUMING_CLIENT)
        await page.evaluate("window.client.on('subscribed', () => { window.resubscribed = true; })")
        lost = await page.evaluate("window.client.session.id")
        redis = Redis.from_url(redis_url)
        await redis.delete(*[key async for key in redis.scan_iter(match=f"{prefix}*")])  # a FLUSHALL, for this test
        await redis.aclose()
        origin = f"http://127.0.0.1:{server.port}"
        async with opened(server.ws_url("/ws"), origin=origin, ping_interval=None) as publisher:
            await publisher.send(json.dumps({"$ws": "publish", "channel": "news", "data": 1}))  # cannot be stored
            await page.wait_for_function("window.resubscribed === true")  # a new session, subscribed again
            await publisher.send(json.dumps({"$ws": "publish", "channel": "news", "data": 2}))
            await page.wait_for_function("window.got.length >= 1")
        assert await page.evaluate("window.got") == [2]
        assert await page.evaluate("window.client.session.id") != lost
        kinds = await page.evaluate("window.events.map(([kind, detail]) => [kind, detail.code ?? null])")
        assert kinds == [["close", 4404], ["session_lost", 4404]]
        await page.close()
    gc.collect()  # asgi-ws serve closed its session store at shutdown: no unclosed Redis connection
