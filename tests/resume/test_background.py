"""The drain waits for the library's fire-and-forget store writes through a public accessor
(asgi_ws._background), not by reading another module's private set."""

from __future__ import annotations

import asyncio
import inspect

from asgi_ws import _background, drain


async def test_the_drain_waits_for_background_writes() -> None:
    done = asyncio.Event()

    async def last_write() -> None:
        await asyncio.sleep(0.2)
        done.set()

    loop = asyncio.get_running_loop()
    task = _background.spawn(last_write())
    assert _background.running(loop) == {task}
    await drain._background_work(loop, loop.time() + 5)
    assert done.is_set() and _background.running(loop) == set()


def test_the_drain_reads_no_private_state_of_the_sessions() -> None:
    source = inspect.getsource(drain)
    assert "_TASKS" not in source and "sys.modules" not in source
