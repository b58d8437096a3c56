"""A real headless Chromium (Debian's package) driven by Playwright.

``./scripts/test`` installs the package when it is missing. Without it these tests skip
locally with a message saying so, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

CHROMIUM = os.environ.get("ASGI_WS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium_missing() -> bool:
    return not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM))


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if _chromium_missing():
        message = f"Chromium not found at {CHROMIUM}: install Debian's 'chromium' package (./scripts/test does)"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)  # CI must never skip
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()
