"""The browser client and binary frames (the rest of the matrix: tests/test_binary.py)."""

from __future__ import annotations

import asyncio
import base64
from importlib import resources
from typing import Any

from asgi_ws import HeartbeatMiddleware, ResumeMiddleware
from tests.support.apps import with_blank_page
from tests.support.server import serve
from tests.test_binary import KEY, MIB, PAYLOADS, WAIT, EchoProbe, assert_binary

BROWSER = """
async () => {
  const done = new Promise((resolve) => {
    const got = [];
    const client = new AsgiWs("/ws", {pingInterval: 0});
    client.on("raw", (data) => {
      got.push(data);
      if (got.length === 3) resolve(got);
    });
    client.on("open", () => {
      const every = new Uint8Array(512);
      for (let i = 0; i < 256; i++) { every[i] = i; every[511 - i] = i; }
      client.send(every);
      client.send(new Uint8Array(0));
      client.send(window.mib);
    });
    client.connect();
    window.client = client;
  });
  const got = await done;
  // Back to the server exactly as received, so that it compares what the page got too.
  for (const data of got) window.client.send(data);
  return got.map((data) => [Object.prototype.toString.call(data), data.byteLength]);
}
"""


async def test_browser_client_sends_and_receives_binary(browser: Any) -> None:
    """asgi-ws.js in Chromium: Uint8Array out, ArrayBuffer in (binaryType), every byte intact."""
    probe = EchoProbe()
    app = ResumeMiddleware(HeartbeatMiddleware(probe, interval=5, timeout=5), secret_keys=[KEY], max_bytes=16 << 20)
    script = (resources.files("asgi_ws.static") / "asgi-ws.js").read_text()
    async with serve(with_blank_page(app)) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.add_script_tag(content=script)
        # The 1 MiB payload, built in the page from the same bytes.
        mib = base64.b64encode(MIB).decode()
        await page.evaluate("(b64) => { window.mib = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)); }", mib)
        kinds = await asyncio.wait_for(page.evaluate(BROWSER), WAIT)
        try:
            async with asyncio.timeout(WAIT):
                while len(probe.received) < 6:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"the page sent back {len(probe.received) - 3} of 3 frames within {WAIT} s") from None
        await page.close()
    assert kinds == [["[object ArrayBuffer]", len(p)] for p in PAYLOADS]
    received = [m.get("bytes") for m in probe.received]
    assert_binary(received[:3], PAYLOADS, "what the server got from the browser client")
    assert_binary(received[3:], PAYLOADS, "what the browser client received (sent back as it was)")


PUBLISH_BYTES = """
() => {
  const client = new AsgiWs("/ws", {pingInterval: 0});
  const outcome = [];
  for (const data of [new Uint8Array([1, 2]), new ArrayBuffer(2), new DataView(new ArrayBuffer(2)), new Blob(["x"])]) {
    try { client.publish("c", data); outcome.push("buffered"); } catch (error) { outcome.push(error.name); }
  }
  client.publish("c", {ok: true});
  return [outcome, client.buffer.length];
}
"""


async def test_browser_client_refuses_to_publish_bytes_as_json(browser: Any) -> None:
    """publish() carries JSON: bytes used to become {"0": 1, "1": 2} (a Uint8Array) or {} (an
    ArrayBuffer) without a word. They are refused; JSON values are still buffered as before."""
    script = (resources.files("asgi_ws.static") / "asgi-ws.js").read_text()
    async with serve(with_blank_page(EchoProbe())) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.add_script_tag(content=script)
        outcome, buffered = await page.evaluate(PUBLISH_BYTES)
        await page.close()
    assert outcome == ["TypeError"] * 4
    assert buffered == 1
