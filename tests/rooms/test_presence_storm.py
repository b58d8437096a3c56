"""A mass connect: thousands of joins at once are a few presence messages, never a backlog
warning, and every process ends with the same members (issue 13's reconnect storm)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
import uuid

import pytest

from asgi_ws import Rooms
from asgi_ws.rooms.presence import MAX_DELTA_MEMBERS
from tests.rooms.test_rooms import member_app
from tests.support.asgi import ws_scope
from tests.support.procs import ROOT
from tests.support.session import Harness

JOINS = 2000


class Counting(logging.Handler):
    """The WARNING (and worse) lines of the asgi_ws loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def join_at_once(rooms: Rooms, count: int, room: str = "lobby") -> list[Harness]:
    """``count`` connections joining ``room`` all at once (no join waits for another)."""
    harnesses = [Harness(member_app(rooms, room=room), ws_scope()) for _ in range(count)]
    await asyncio.gather(*(h.start() for h in harnesses))
    return harnesses


async def wait_members(rooms: Rooms, count: int, timeout: float, room: str = "lobby") -> int:
    """Wait until ``rooms`` sees ``count`` members of ``room`` (every process's); return how many it saw."""
    deadline = time.monotonic() + timeout
    while len(rooms.members(room)) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return len(rooms.members(room))


async def test_two_thousand_joins_at_once_on_a_memory_broker_publish_a_few_deltas() -> None:
    warnings = Counting()
    logging.getLogger("asgi_ws").addHandler(warnings)
    try:
        async with Rooms("memory://", presence_interval=1.0) as rooms:
            sent: list[dict[str, object]] = []
            queue = rooms._presence.queue
            rooms._presence.queue = lambda messages: (sent.extend(messages), queue(messages))  # type: ignore[method-assign]
            harnesses = await join_at_once(rooms, JOINS)
            assert len(rooms.members("lobby")) == JOINS  # this process's own members: at once
            await asyncio.sleep(0.5)  # a flush
            deltas = [m for m in sent if m["t"] == "d"]
            assert sum(len(m.get("j", {})) for m in deltas) == JOINS  # type: ignore[arg-type]
            assert len(deltas) <= 2 * (JOINS // MAX_DELTA_MEMBERS + 1)  # not one per join
            for harness in harnesses:
                harness.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            await asyncio.gather(*(h.task for h in harnesses if h.task is not None))
            assert rooms.members("lobby") == []
        assert warnings.lines == []
    finally:
        logging.getLogger("asgi_ws").removeHandler(warnings)


@pytest.mark.timeout(120)
async def test_two_thousand_joins_at_once_over_redis_across_two_processes(redis_url: str) -> None:
    """Two processes each make half the joins at once: both see all of them, no WARNING line."""
    namespace = f"storm{uuid.uuid4().hex[:8]}"
    half = JOINS // 2
    warnings = Counting()
    logging.getLogger("asgi_ws").addHandler(warnings)
    node = subprocess.Popen(  # noqa: ASYNC220 - started once, read through an executor
        [sys.executable, "-m", "tests.rooms.presence_node", redis_url, namespace, str(half), str(JOINS)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert node.stdin is not None and node.stdout is not None
    loop = asyncio.get_running_loop()
    try:
        async with Rooms(redis_url, namespace=namespace, presence_interval=1.0) as rooms:
            ready = await asyncio.wait_for(loop.run_in_executor(None, node.stdout.readline), 30)
            assert json.loads(ready) == {"ready": True}
            await wait_nodes(rooms, 1)
            node.stdin.write("go\n")
            node.stdin.flush()
            harnesses = await join_at_once(rooms, half)
            seen_here = await wait_members(rooms, JOINS, timeout=30)
            there = json.loads(await asyncio.wait_for(loop.run_in_executor(None, node.stdout.readline), 60))
            assert seen_here == JOINS and there["members"] == JOINS
            assert there["warnings"] == [] and warnings.lines == []
            assert there["published"] < 20, there  # a few deltas, beats and states: not one per join
            node.stdin.write("done\n")
            node.stdin.flush()
            for harness in harnesses:
                harness.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            assert await wait_members(rooms, 0, timeout=30) == 0  # the other node's leave at its goodbye
    finally:
        logging.getLogger("asgi_ws").removeHandler(warnings)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            node.wait(10)  # its clean close: the goodbye
        if node.poll() is None:
            node.kill()
        node.wait(10)
        node.stdin.close()
        node.stdout.close()


async def wait_nodes(rooms: Rooms, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(rooms._presence.tracker.nodes()) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
