"""The library's fire-and-forget work, kept referenced until done, and visible to the drain.

A resumable session's end stores its last frames and keeps it in the store, a renewal
extends it: nobody awaits these writes, yet a shutdown must (``asgi_ws.drain``). They are
started with :func:`spawn`, and :func:`running` lists those of an event loop still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_TASKS: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task


def running(loop: asyncio.AbstractEventLoop) -> set[asyncio.Task[Any]]:
    """The background tasks of ``loop`` not done yet."""
    return {task for task in _TASKS if task.get_loop() is loop and not task.done()}


__all__ = ["running", "spawn"]
