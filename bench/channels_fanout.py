"""Where a Channels consumer's delivery time goes, on BrokerChannelLayer (complements bench/fanout.py).

In process, no sockets: N consumers (Channels' ``AsyncConsumer`` under its own
``await_many_dispatch``) in one group on ``BrokerChannelLayer("memory://")``, one ``group_send``
per round, until every consumer's handler has called ``send``. Three measurements, rounds
alternating, medians, µs per delivery (wall time of the round / N, one process, one core):

- ``layer``: the layer alone: ``group_send`` plus one ``receive()`` per member (tasks waiting);
- ``consumers``: stock ``AsyncConsumer`` (its dispatch awaits ``aclose_old_connections()``, a
  ``sync_to_async`` hop to a worker thread and back, for every message);
- ``consumers-nodb``: the same consumer, its ``dispatch`` calling the handler directly;
- ``lean-receive``: the consumer with ``LeanDispatchMixin`` (no hop: no database connection is
  open; its own loop in place of ``await_many_dispatch``), reading its channel with
  ``receive()`` (a layer that offers no reader);
- ``lean``: the same, reading its channel from the layer's buffer (``BrokerChannelLayer.reader``).

``--breakdown FILE...`` instead sorts py-spy raw stacks (``bench/fanout.py --py-spy DIR``) into
the same parts: the layer, Channels' per-message hop (both threads), the rest of Channels'
dispatch or LeanDispatchMixin's, the WebSocket send, the event loop and uvicorn.

    python bench/channels_fanout.py --n 1000 5000
    python bench/fanout.py --n 5000 --systems channels-layer-memory --py-spy /tmp/spy
    python bench/channels_fanout.py --breakdown /tmp/spy/*.txt
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import table
from tests.support.django import setup

setup()  # Django, before Channels is imported

from channels.consumer import AsyncConsumer, get_handler_name  # noqa: E402

from asgi_ws.contrib.channels import BrokerChannelLayer, LeanDispatchMixin  # noqa: E402

MESSAGE = {"type": "bench.message", "text": "x" * 100}


class Stock(AsyncConsumer):
    async def bench_message(self, event: dict[str, str]) -> None:
        await self.send({"type": "websocket.send", "text": event["text"]})


class NoDb(Stock):
    async def dispatch(self, message: dict[str, str]) -> None:
        await getattr(self, get_handler_name(message))(message)


class Lean(LeanDispatchMixin, Stock):
    pass


class NoReaderLayer(BrokerChannelLayer):
    """A layer whose consumers read with ``receive()``: what LeanDispatchMixin does on other layers."""

    def reader(self, channel: str, listener: Callable[[], None]) -> None:
        return None


async def layer_alone(layer: BrokerChannelLayer, channels: list[str]) -> float:
    receivers = [asyncio.ensure_future(layer.receive(c)) for c in channels]
    await asyncio.sleep(0)
    started = time.perf_counter()
    await layer.group_send("bench", MESSAGE)
    await asyncio.gather(*receivers)
    return time.perf_counter() - started


class Consumers:
    """N consumers of ``cls`` on ``layer``, each a Channels application instance with its own queue."""

    def __init__(self, layer: BrokerChannelLayer, cls: type[AsyncConsumer], n: int) -> None:
        self.layer, self.cls, self.n = layer, cls, n
        self.sent = 0
        self.done: asyncio.Future[None] | None = None
        self.apps: list[asyncio.Task[Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent += 1
        if self.sent == self.n and self.done is not None:
            self.done.set_result(None)

    async def start(self) -> None:
        from channels.layers import channel_layers

        channel_layers.set("default", self.layer)
        idle: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for _ in range(self.n):
            self.apps.append(asyncio.ensure_future(self.cls.as_asgi()({"type": "channel"}, idle.get, self.send)))
        loop = asyncio.get_running_loop()
        for _ in range(6000):  # until each consumer made its channel and waits on it (60 s at most)
            core = self.layer._cores.get(loop)
            if core is not None and len(core.inboxes) == self.n:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"the {self.n} consumers did not start within 60 s")
        for channel in list(core.inboxes):
            await self.layer.group_add("bench", channel)

    async def round(self) -> float:
        self.sent, self.done = 0, asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        await self.layer.group_send("bench", MESSAGE)
        await asyncio.wait_for(self.done, 120)
        return time.perf_counter() - started

    async def stop(self) -> None:
        for app in self.apps:
            app.cancel()
        await asyncio.gather(*self.apps, return_exceptions=True)


async def measure(n: int, rounds: int) -> dict[str, float]:
    bare = BrokerChannelLayer(prefix="bare")
    channels = [await bare.new_channel() for _ in range(n)]
    for channel in channels:
        await bare.group_add("bench", channel)
    groups = {"consumers": Consumers(BrokerChannelLayer(prefix="stock"), Stock, n)}
    groups["consumers-nodb"] = Consumers(BrokerChannelLayer(prefix="nodb"), NoDb, n)
    groups["lean-receive"] = Consumers(NoReaderLayer(prefix="lean-receive"), Lean, n)
    groups["lean"] = Consumers(BrokerChannelLayer(prefix="lean"), Lean, n)
    for consumers in groups.values():
        await consumers.start()
    runs: dict[str, Callable[[], Any]] = {"layer": lambda: layer_alone(bare, channels)}
    runs |= {name: consumers.round for name, consumers in groups.items()}
    times: dict[str, list[float]] = collections.defaultdict(list)
    for i in range(rounds + 1):  # the first is a warm-up
        for name, run in runs.items():
            seconds = await run()
            if i:
                times[name].append(seconds)
    for consumers in groups.values():
        await consumers.stop()
        await consumers.layer.close()
    await bare.close()
    return {name: statistics.median(values) / n * 1e6 for name, values in times.items()}


# -- py-spy breakdown ---------------------------------------------------------------------------------

CATEGORIES: list[tuple[str, Callable[[list[str], bool], bool]]] = [
    ("Channels: aclose_old_connections, worker thread", lambda f, thread: thread and _has(f, "thread_handler")),
    ("other threads (an executor thread waiting for work)", lambda f, thread: thread),
    ("Channels: aclose_old_connections (sync_to_async hop)", lambda f, _: _has(f, "aclose_old_connections")),
    (
        "WebSocket send (consumer.send, uvicorn)",
        lambda f, _: _has(f, "AsyncConsumer.send ", "send (channels/consumer.py"),
    ),
    (
        "LeanDispatchMixin: waking the consumer (from the fan-out)",
        lambda f, _: _has(f, "_Loop.wake ", "wake (asgi_ws/contrib/channels/lean.py"),
    ),
    ("BrokerChannelLayer", lambda f, _: _has(f, "asgi_ws/contrib/channels/layer", "asgi_ws/brokers/frames")),
    ("Channels: await_many_dispatch, dispatch", lambda f, _: _has(f, "await_many_dispatch")),
    (
        "LeanDispatchMixin: its loop, dispatch and handler",
        lambda f, _: _has(f, "asgi_ws/contrib/channels/lean", "asgi_ws/contrib/channels/db_connections"),
    ),
    ("broker client (redis-py, reader)", lambda f, _: _has(f, "redis/", "asgi_ws/brokers/")),
    ("event loop, uvicorn, other", lambda f, _: True),
]


#: How py-spy names a thread's first frame: with the class (``Thread._bootstrap (threading.py:...)``) or
#: without it (``_bootstrap (threading.py:...)``), as the Python version lets it tell; frames are
#: matched in both forms for the same reason.
THREAD_ROOTS = ("Thread._bootstrap", "_bootstrap (threading.py")


def _has(frames: list[str], *needles: str) -> bool:
    return any(needle in frame for frame in frames for needle in needles)


def breakdown(path: Path) -> dict[str, float]:
    """Share of on-CPU samples per category (the first category that matches a stack wins)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].startswith(THREAD_ROOTS)  # a worker thread (sync_to_async's executor)
        name = next(name for name, matches in CATEGORIES if matches(frames[1:], thread))
        counts[name] += int(count)
    total = sum(counts.values()) or 1
    return {name: counts[name] / total for name, _ in CATEGORIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", nargs="+", type=int, default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", nargs="+", type=Path, help="py-spy raw files to sort into parts")
    args = parser.parse_args()
    if args.breakdown:
        shares = {path.stem: breakdown(path) for path in args.breakdown}
        rows = [[name] + [f"{parts[name]:.0%}" for parts in shares.values()] for name, _ in CATEGORIES]
        print(table(["on-CPU samples of the server process", *shares], rows))
        return
    results = {n: asyncio.run(measure(n, args.rounds)) for n in args.n}
    names = ("layer", "consumers", "consumers-nodb", "lean-receive", "lean")
    rows = [[f"{n:,}", *(f"{r[name]:.1f}" for name in names)] for n, r in results.items()]
    print(f"`python bench/channels_fanout.py {' '.join(sys.argv[1:])}`, µs per delivery (median of {args.rounds}):\n")
    headers = ["N", "layer alone", "stock AsyncConsumer", "AsyncConsumer, dispatch without the hop"]
    print(table([*headers, "LeanDispatchMixin, receive()", "LeanDispatchMixin, layer reader"], rows))


if __name__ == "__main__":
    main()
