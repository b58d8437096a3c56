"""A presence node in its own OS process, for tests/rooms/test_presence_storm.py.

    python -m tests.rooms.presence_node BROKER_URL NAMESPACE JOINS TOTAL

Starts a Rooms instance on the broker, makes JOINS members join ``lobby`` at once, waits until
its view of ``lobby`` holds TOTAL members (every process's), and prints one JSON line: the
members it saw, the WARNING lines asgi_ws logged, and how many presence messages it published.
It then waits for a line on stdin (the test's "done") and closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from asgi_ws import Rooms
from tests.rooms.test_presence_storm import Counting, join_at_once, wait_members


async def main(url: str, namespace: str, joins: int, total: int) -> None:
    warnings = Counting()
    logging.getLogger("asgi_ws").addHandler(warnings)
    rooms = Rooms(url, namespace=namespace, presence_interval=1.0)
    published = counted_publishes(rooms)
    async with rooms:
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the test's "go"
        harnesses = await join_at_once(rooms, joins)
        seen = await wait_members(rooms, total, timeout=30)
        print(json.dumps({"members": seen, "warnings": warnings.lines, "published": published[0]}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the test's "done"
        for harness in harnesses:
            harness.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.sleep(0.2)


def counted_publishes(rooms: Rooms) -> list[int]:
    """Count what ``rooms`` publishes on its presence channel."""
    count = [0]
    publish = rooms.broker.publish
    channel = rooms._presence.channel

    async def counting(name: str, payload: bytes, *args: object, **kwargs: object) -> object:
        if name == channel:
            count[0] += 1
        return await publish(name, payload, *args, **kwargs)

    rooms.broker.publish = counting  # type: ignore[method-assign]
    return count


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
