"""What publisher confirms cost the AMQP broker: ``amqp://...?confirm=1`` (the default) against ``confirm=0``.

One broker subscribed to the channel it publishes on (its own queue on the machine's RabbitMQ),
``--messages`` ~100-byte messages per round, three ways:

- ``one by one``: each ``await broker.publish(...)`` before the next, as one Rooms publish
  at a time does; with confirms each waits for RabbitMQ's ack (a round trip).
- ``concurrent``: ``--window`` publishes in flight at once (``asyncio.gather``), as many
  connections publishing in one process do; the confirms of a window travel together.
- ``publish to delivery``: one publish, then wait for its delivery back, one after the other
  (what a member in another process waits for; confirms are off that path).

Rounds alternate between the two settings; medians over ``--rounds``.

    python bench/amqp_confirms.py                    # 5,000 messages, 7 rounds, ~1 min
    python bench/amqp_confirms.py --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_ws.brokers.amqp import AmqpBroker
from bench._util import median, table

URL = "amqp://guest:guest@127.0.0.1:5672/"
PAYLOAD = b"x" * 100


async def measure(url: str, messages: int, window: int) -> dict[str, float]:
    broker = AmqpBroker(url)
    got = 0
    arrived = asyncio.Event()

    def deliver(channel: str, payload: bytes, position: str | None = None) -> None:
        nonlocal got
        got += 1
        arrived.set()

    await broker.connect(deliver)
    try:
        await broker.subscribe("bench")
        started = time.perf_counter()
        for _ in range(messages):
            await broker.publish("bench", PAYLOAD)
        one_by_one = messages / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(messages // window):
            await asyncio.gather(*(broker.publish("bench", PAYLOAD) for _ in range(window)))
        concurrent = (messages // window * window) / (time.perf_counter() - started)
        while got < messages + messages // window * window:  # everything sent so far is back
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 30)
        latencies = []
        for _ in range(min(messages, 1000)):
            arrived.clear()
            started = time.perf_counter()
            await broker.publish("bench", PAYLOAD)
            await asyncio.wait_for(arrived.wait(), 30)
            latencies.append(time.perf_counter() - started)
        return {"one_by_one": one_by_one, "concurrent": concurrent, "roundtrip_us": median(latencies) * 1e6}
    finally:
        await broker.close()


async def main(args: argparse.Namespace) -> None:
    exchange = f"bench.{uuid.uuid4().hex[:8]}"
    results: dict[str, list[dict[str, float]]] = {"1": [], "0": []}
    for _ in range(args.rounds + 1):  # the first round warms up
        for confirm in ("1", "0"):
            url = f"{args.url}?exchange={exchange}&confirm={confirm}"
            results[confirm].append(await measure(url, args.messages, args.window))
    rows = []
    for confirm, label in (("1", "confirm=1 (default)"), ("0", "confirm=0")):
        kept = results[confirm][1:]
        rows.append([
            label,
            f"{median([r['one_by_one'] for r in kept]):,.0f}",
            f"{median([r['concurrent'] for r in kept]):,.0f}",
            f"{median([r['roundtrip_us'] for r in kept]):,.0f}",
        ])  # fmt: skip
    print(f"`python bench/amqp_confirms.py --messages {args.messages} --window {args.window} --rounds {args.rounds}`")
    print()
    print(
        table(
            ["publisher confirms", "publishes/s, one by one", f"publishes/s, {args.window} in flight",
             "publish to own delivery, median µs"],
            rows,
        )
    )  # fmt: skip
    import aio_pika

    connection = await aio_pika.connect(args.url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(exchange)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=URL)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    asyncio.run(main(parser.parse_args()))
