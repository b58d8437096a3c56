"""The example's chat page in a real Chromium: two logged-in pages chat, a logged-out one is refused."""

from __future__ import annotations

from typing import Any

from tests.contrib_channels.conftest import PASSWORD, Example

WAIT = 15_000  # ms: every wait is bounded


async def logged_in_page(browser: Any, example: Example, username: str) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{example.origin}/chat/lobby/")  # login_required: the login form first
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{example.origin}/chat/lobby/", timeout=WAIT)
    await page.wait_for_function("document.getElementById('status').dataset.state === 'open'", timeout=WAIT)
    return page


async def text_of(page: Any, element: str, expected: str) -> None:
    script = "([id, text]) => document.getElementById(id).innerText.includes(text)"
    try:
        await page.wait_for_function(script, arg=[element, expected], timeout=WAIT)
    except Exception:
        shown = await page.inner_text(f"#{element}")
        raise AssertionError(f"#{element} never showed {expected!r}: {shown!r}") from None


async def test_two_pages_chat_and_a_logged_out_page_is_refused(browser: Any, example: Example) -> None:
    alice = await logged_in_page(browser, example, "alice")
    bob = await logged_in_page(browser, example, "bob")
    for page in (alice, bob):
        await text_of(page, "members", "alice")
        await text_of(page, "members", "bob")

    await alice.fill("#text", "hello bob")
    await alice.press("#text", "Enter")
    await text_of(bob, "messages", "alice: hello bob")
    await bob.fill("#text", "hi alice")
    await bob.press("#text", "Enter")
    await text_of(alice, "messages", "bob: hi alice")
    await bob.fill("#announce input[name=text]", "cake in the kitchen")  # Django view -> channel layer
    await bob.press("#announce input[name=text]", "Enter")
    await text_of(alice, "messages", "bob: cake in the kitchen")

    await bob.context.close()  # bob leaves: alice's presence list follows
    await alice.wait_for_function("!document.getElementById('members').innerText.includes('bob')", timeout=WAIT)

    # Logged out: the page redirects to the login form, and a socket opened from it is refused.
    stranger = await (await browser.new_context()).new_page()
    await stranger.goto(f"{example.origin}/chat/lobby/")
    assert "/accounts/login/" in stranger.url
    outcome = await stranger.evaluate(
        """(url) => new Promise((resolve) => {
             const ws = new WebSocket(url);
             ws.onopen = () => resolve("opened");
             ws.onclose = (event) => resolve(`closed ${event.code}`);
           })""",
        example.ws_url("/ws/chat/lobby/"),
    )
    assert outcome == "closed 1006"  # the handshake was refused (401): the browser never opened it
    await alice.context.close()
    await stranger.context.close()
