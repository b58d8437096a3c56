"""The browser client comes back at once after 1001 (a drain) and 1012 (a restart), then backs off."""

from __future__ import annotations

from importlib import resources
from typing import Any

from asgi_ws.types import Receive, Scope, Send
from tests.support.apps import with_blank_page
from tests.support.server import serve

CLIENTS = """
async () => {
  Math.random = () => 0.5;  // the delays become exact: half of each ceiling
  window.delays = {1001: [], 1012: []};
  for (const code of [1001, 1012]) {
    const client = new AsgiWs(`/ws?code=${code}`, {pingInterval: 0, resume: false, backoff: {base: 10, cap: 60}});
    client.on("reconnecting", ({delay}) => window.delays[code].push(delay));
    client.connect();
  }
}
"""


async def closing_with_the_code_asked(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then close with the code in the query string (``?code=1001``)."""
    code = int(scope["query_string"].decode().partition("code=")[2].partition("&")[0])
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": "going away"})


async def test_the_browser_client_reconnects_at_once_after_1001_and_1012(browser: Any) -> None:
    script = (resources.files("asgi_ws.static") / "asgi-ws.js").read_text()
    async with serve(with_blank_page(closing_with_the_code_asked)) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.add_script_tag(content=script)
        await page.evaluate(CLIENTS)
        await page.wait_for_function("window.delays[1001].length >= 2 && window.delays[1012].length >= 2")
        delays = await page.evaluate("window.delays")
    # First: half the restart jitter (0.25 s), not half the backoff's 10 s. The reconnection
    # counted as an attempt, so the next close in a row gets the backoff: half of 10 * 2.
    assert delays == {"1001": [0.125, 10], "1012": [0.125, 10]}
