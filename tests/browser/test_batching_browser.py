"""The served browser client (asgi-ws.js) in a real Chromium unpacks batch frames: one event a message, in order."""

from __future__ import annotations

import json
from typing import Any

from tests.support.pages import with_browser_client
from tests.support.server import serve
from tests.test_batching_e2e import Emitter, bounded, expected

WAIT = 15_000  # ms

SCRIPT = """
window.got = [];
const client = new AsgiWs("/ws", {resume: false});
client.on("raw", (data) => window.got.push(
  typeof data === "string" ? data : "b:" + Array.from(new Uint8Array(data)).join(",")));
client.on("welcome", () => client.send("emit 1 1201 100"));
client.connect();
window.client = client;
"""


async def test_the_browser_client_unpacks_batches_into_its_messages(browser: Any) -> None:
    emitter = Emitter()
    async with serve(with_browser_client(bounded(emitter))) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.add_script_tag(url="/asgi-ws.js")
        await page.add_script_tag(content=SCRIPT)
        try:
            await page.wait_for_function("window.got.length >= 1200", timeout=WAIT)
        except Exception:
            got = await page.evaluate("window.got.length")
            raise AssertionError(f"1,200 messages in the page within {WAIT} ms: {got}") from None
        got = await page.evaluate("window.got")
        sent = [m if isinstance(m, str) else "b:" + ",".join(map(str, m)) for m in expected(1, 1201, 100)]
        assert got == sent, json.dumps(got[:3])
        assert emitter.connections[0].outbound.batches > 0  # they came in batch frames
        assert await page.evaluate("window.client.received") == 1200
        await page.evaluate("window.client.close()")
