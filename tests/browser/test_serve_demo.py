"""The demo page of ``asgi-ws serve`` as a person sees it, in Chromium against real server processes.

Every wait is bounded (Playwright's ``expect`` with a timeout) and says what did not happen.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.support.procs import asgi_ws_serve, free_port

#: The same resume keys for every process: a restarted server accepts the page's token, and
#: refuses the resume only because its memory store never had the session (unknown_session).
KEYS = {"ASGI_WS_RESUME_KEYS": "serve-demo-test-key"}
#: A heartbeat every second: the page measures the round trip at the server's interval.
SERVE = ("--heartbeat-interval", "1")
WAIT = 10_000  # ms, any one step

#: Every text the connection label takes, in order (a MutationObserver set before the page's scripts run).
RECORD_STATES = """
window.states = [];
new MutationObserver(() => {
  const node = document.getElementById("status");
  const text = node && node.textContent;
  if (text && window.states[window.states.length - 1] !== text) window.states.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


async def open_demo(browser: Any, url: str, name: str) -> Any:
    """A page on the demo, auto-joined to the lobby, then joined again under ``name``."""
    page = await browser.new_page(viewport={"width": 1100, "height": 860})
    await page.add_init_script(RECORD_STATES)
    await page.goto(url)
    await expect(page.locator("#status"), "the page connects on load").to_have_text("open", timeout=WAIT)
    await expect(page.locator("#say-hint"), "the page joins the lobby by itself").to_contain_text(
        "Sending to lobby as guest-", timeout=WAIT
    )
    await expect(page.locator("#send"), "joined: Send is enabled").to_be_enabled(timeout=WAIT)
    await page.fill("#name", name)
    await page.click("#join button")
    await expect(page.locator("#messages"), f"{name}'s join is confirmed").to_contain_text(
        f"You joined lobby as {name}.", timeout=WAIT
    )
    return page


async def say(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_the_demo_connects_on_load_chats_with_presence_round_trip_resume_and_errors(browser: Any) -> None:
    with asgi_ws_serve(*SERVE, env=KEYS) as server:
        url = f"http://127.0.0.1:{server.port}/"

        # Without its script the page offers no way to send: Send is disabled in the HTML itself.
        static = await browser.new_context(java_script_enabled=False)
        bare = await static.new_page()
        await bare.goto(url)
        await expect(bare.locator("#send"), "Send is disabled before any join").to_be_disabled(timeout=WAIT)
        await expect(bare.locator("#text"), "the message box too").to_be_disabled(timeout=WAIT)
        await static.close()

        alice = await open_demo(browser, url, "alice")
        bob = await open_demo(browser, url, "bob")
        assert (await alice.evaluate("window.states"))[:2] == ["connecting", "open"]
        await expect(alice.locator("#members"), "alice sees bob").to_contain_text("bob", timeout=WAIT)
        await expect(bob.locator("#members"), "bob sees alice").to_contain_text("alice", timeout=WAIT)
        await expect(bob.locator("#members"), "bob's own entry is marked").to_contain_text("bob(you)", timeout=WAIT)
        await expect(bob.locator("#session"), "a new resumable session").to_have_text(
            re.compile(r"^new · resumable \d+ s$"), timeout=WAIT
        )

        # Messages carry their sender and time; the sender sees the server's confirmation.
        await say(alice, "hello bob")
        line = bob.locator(".msg", has_text="hello bob")
        await expect(line.locator(".who"), "bob gets alice's message, signed").to_have_text("alice", timeout=WAIT)
        await expect(line.locator("time"), "with the time it was sent").to_have_text(
            re.compile(r"^\d\d:\d\d:\d\d$"), timeout=WAIT
        )
        await expect(alice.locator(".msg.mine .delivery"), "alice's message is confirmed").to_have_text(
            "✓ sent", timeout=WAIT
        )
        await say(bob, "hi alice")
        await expect(alice.locator(".msg", has_text="hi alice"), "and back").to_contain_text("bob", timeout=WAIT)
        # The round trip, measured at the server's heartbeat interval.
        await expect(alice.locator("#rtt"), "a round-trip time is shown").to_have_text(
            re.compile(r"^\d+ ms$"), timeout=WAIT
        )

        # Leaving: Send is disabled with a hint, and the others see it; Join brings it back.
        await bob.click("#leave")
        await expect(bob.locator("#send"), "no Send outside a room").to_be_disabled(timeout=WAIT)
        await expect(bob.locator("#say-hint"), "the hint says why").to_contain_text("join one", timeout=WAIT)
        await expect(alice.locator("#members"), "bob left alice's list").not_to_contain_text("bob", timeout=WAIT)
        await bob.click("#join button")
        await expect(bob.locator("#send"), "Send again after joining").to_be_enabled(timeout=WAIT)
        await expect(alice.locator("#members"), "bob is back").to_contain_text("bob", timeout=WAIT)

        # A dropped connection (not a close 1000): the page waits out its backoff, made long
        # here, while bob talks; "Retry now" resumes the session with what alice missed.
        await alice.evaluate(
            """() => {
              const client = window.demo.client, random = Math.random;
              Math.random = () => 0.99;                     // the next delay: 0.99 * 60 s
              client.backoff.base = client.backoff.cap = 60;
              client.ws.close(4000, "test: a dropped connection");
              client.on("reconnecting", () => { Math.random = random; });
            }"""
        )
        await expect(alice.locator("#status"), "the drop shows").to_have_text("reconnecting", timeout=WAIT)
        await expect(alice.locator("#status-detail"), "with the next try").to_contain_text(
            re.compile(r"next try \(attempt 1\) in \d+\.\d s"), timeout=WAIT
        )
        await expect(alice.locator("#retry"), "and a way not to wait").to_be_visible(timeout=WAIT)
        await alice.evaluate("() => { const b = window.demo.client.backoff; b.base = 0.5; b.cap = 30; }")
        for i in range(3):
            await say(bob, f"while you were away {i}")
        await expect(bob.locator(".delivery.ok"), "bob's messages are published").to_have_count(4, timeout=WAIT)
        await alice.click("#retry")
        await expect(alice.locator("#status"), "alice is back").to_have_text("open", timeout=WAIT)
        await expect(alice.locator("#session"), "resumed, with what she missed").to_have_text(
            "resumed · 3 replayed", timeout=WAIT
        )
        replayed = alice.locator(".msg", has=alice.locator(".tag", has_text="replayed"))
        await expect(replayed, "the missed messages, marked").to_have_count(3, timeout=WAIT)
        await expect(replayed.last, "in order").to_contain_text("while you were away 2", timeout=WAIT)
        # Presence after the resume: alice under her name for bob, and alice still sees changes.
        await expect(bob.locator("#members"), "alice is back, named").to_contain_text("alice", timeout=WAIT)
        await expect(bob.locator("#members"), "not anonymous").not_to_contain_text("anonymous", timeout=WAIT)
        await expect(alice.locator("#members"), "alice sees herself").to_contain_text("alice(you)", timeout=WAIT)

        # What the server refuses is shown: a flood is rate limited.
        await alice.evaluate(
            "() => { for (let i = 0; i < 150; i++) window.demo.client.publish('flood', {text: `flood ${i}`}); }"
        )
        await expect(alice.locator("#messages .err"), "the rate limit shows").to_contain_text(
            "Rate limited: the server dropped", timeout=WAIT
        )
        await bob.close()
        await expect(alice.locator("#members"), "bob's page closed").not_to_contain_text("bob", timeout=WAIT)
        await expect(alice.locator("#messages"), "and the log says so").to_contain_text("bob left.", timeout=WAIT)


async def test_the_demo_through_a_server_killed_and_started_again(browser: Any) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with asgi_ws_serve(*SERVE, port=port, env=KEYS) as first:
        alice = await open_demo(browser, url, "alice")
        bob = await open_demo(browser, url, "bob")
        await expect(alice.locator("#members"), "alice sees bob").to_contain_text("bob", timeout=WAIT)
        for page in (alice, bob):  # retry at most a second apart: the restart is noticed soon
            await page.evaluate("() => { window.demo.client.backoff.cap = 1; }")
        first.proc.kill()  # no drain, no close frame: a crash
        first.proc.wait(10)
        for page in (alice, bob):
            await expect(page.locator("#status"), "the loss shows").to_have_text("reconnecting", timeout=WAIT)
        await expect(alice.locator("#status-detail"), "with the close and the next try").to_contain_text(
            re.compile(r"connection lost \(1006: .*\); next try \(attempt \d+\) in \d+\.\d s"), timeout=WAIT
        )
        await expect(alice.locator("#messages"), "and in the log").to_contain_text(
            "Reconnecting: connection lost (1006", timeout=WAIT
        )

    # The sessions lived in the killed process's memory store: the new process knows the
    # token's key but not the session, so the page says the session was lost and starts anew.
    with asgi_ws_serve(*SERVE, port=port, env=KEYS):
        for page in (alice, bob):
            await expect(page.locator("#status"), "reconnected").to_have_text("open", timeout=WAIT)
            await expect(page.locator("#session"), "a new session").to_have_text("lost · new session", timeout=WAIT)
            await expect(page.locator("#messages"), "the reason is shown").to_contain_text(
                "could not be resumed (unknown_session", timeout=WAIT
            )
        await expect(alice.locator("#members"), "bob is there again").to_contain_text("bob", timeout=WAIT)
        await expect(bob.locator("#members"), "alice too").to_contain_text("alice", timeout=WAIT)
        await say(alice, "we are back")
        await expect(bob.locator("#messages"), "chat goes on").to_contain_text("we are back", timeout=WAIT)
        await expect(alice.locator(".msg.mine .delivery").last, "confirmed").to_have_text("✓ sent", timeout=WAIT)
        await expect(alice.locator("#rtt"), "the round trip is measured again").to_have_text(
            re.compile(r"^\d+ ms$"), timeout=WAIT
        )
        states = await alice.evaluate("window.states")
        assert states[:2] == ["connecting", "open"] and states[-1] == "open", states
        assert "reconnecting" in states[2:], states
        await alice.screenshot(path="/tmp/demo.png", full_page=True)
