"""The demo page and the browser-only tricks (subprotocol-carried token) in a real Chromium."""

from __future__ import annotations

from typing import Any

from asgi_ws import AuthMiddleware, SubprotocolMiddleware
from asgi_ws.auth import SubprotocolToken
from examples.fastapi_app.main import app as demo_app
from tests.support.apps import echo_app, with_blank_page
from tests.support.server import serve

OPEN_SOCKET = """
([url, protocols]) => new Promise((resolve) => {
  const ws = new WebSocket(url, protocols);
  const seen = {open: false, protocol: null, messages: []};
  ws.onopen = () => { seen.open = true; seen.protocol = ws.protocol; };
  ws.onmessage = (e) => { seen.messages.push(e.data); ws.close(1000); };
  ws.onclose = (e) => resolve({...seen, code: e.code, reason: e.reason});
})
"""


async def wait_for_log(page: Any, text: str, timeout: float = 10_000) -> str:
    await page.wait_for_function(
        "(t) => document.getElementById('log').innerText.includes(t)", arg=text, timeout=timeout
    )
    return str(await page.inner_text("#log"))


async def test_demo_page_connects_and_shows_refusals_and_expiry(browser: Any, ws_impl: str) -> None:
    async with serve(demo_app, ws=ws_impl) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        await page.click("#connect")
        log = await wait_for_log(page, '"event":"welcome"')
        assert 'open, subprotocol "chat.v2"' in log
        assert '"user":"alice"' in log and f'"origin":"http://127.0.0.1:{server.port}"' in log
        log = await wait_for_log(page, 'control {"$ws":"welcome"')  # the page opted in
        assert '"heartbeat":{"interval":10,"timeout":10}' in log
        await page.fill("#text", "hello from chromium")
        await page.click("#send")
        await wait_for_log(page, '"text":"hello from chromium"')
        await page.click("#flood")  # 30 at once: the rate limit lets a burst of 10 through
        await wait_for_log(page, '"code":"rate_limited"')  # may come before the app's echoes of the burst
        # hello and "hello from chromium" took 2 tokens of the 10: flood 0-7 at least pass
        log = await wait_for_log(page, '"text":"flood 7"')
        assert '"text":"flood 29"' not in log

        # Refused handshakes: the browser only sees 1006; the HTTP status is in the server log.
        await page.click("#no-ticket")
        await wait_for_log(page, "no ticket: closed 1006")
        await page.click("#bad-protocol")
        await wait_for_log(page, "mqtt: closed 1006")

        # A connection whose credentials expire is closed with 4401, which browsers do receive.
        await page.fill("#lifetime", "1")
        await page.click("#connect")
        await wait_for_log(page, "chat: closed 4401 credentials expired")


async def test_token_in_subprotocol_from_a_browser(browser: Any, ws_impl: str) -> None:
    app = AuthMiddleware(
        SubprotocolMiddleware(echo_app(), supported=["chat.v2"]),
        backend=SubprotocolToken(lambda token: "alice" if token == "s3cret" else None),
    )
    async with serve(with_blank_page(app), ws=ws_impl) as server:
        page = await browser.new_page()
        await page.goto(server.http_url("/"))
        url = server.ws_url("/ws")
        ok = await page.evaluate(OPEN_SOCKET, [url, ["chat.v2", "bearer.s3cret"]])
        assert ok["open"] and ok["protocol"] == "chat.v2", ok
        assert '"user": "alice"' in ok["messages"][0]
        assert '"subprotocols": ["chat.v2"]' in ok["messages"][0]  # the token entry never reaches the app

        bad = await page.evaluate(OPEN_SOCKET, [url, ["chat.v2", "bearer.wrong"]])
        assert not bad["open"] and bad["code"] == 1006

        # The rule the docs warn about: offering only the token entry, the browser gets no
        # subprotocol back (the token is never echoed) and fails the handshake itself.
        alone = await page.evaluate(OPEN_SOCKET, [url.replace("/ws", "/alone"), ["bearer.s3cret"]])
        assert not alone["open"] and alone["code"] == 1006
