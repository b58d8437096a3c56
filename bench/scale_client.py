"""One load-client process of ``bench/scale.py``: many picows connections from one source address.

Driven over stdin/stdout, one JSON object a line: each command gets one reply line. Commands:

- ``{"op": "connect", "url": ..., "count": N, "source": "127.0.0.2", "hello": true,
  "subscribe": "feed", "resume": true}``: open N connections (``?ws_resume=new`` when
  ``resume``), say ``hello`` (heartbeat armed) and subscribe; replies once every one is
  subscribed (or failed), with counts.
- ``{"op": "stats"}``: counts so far (connected, subscribed, pings answered, data frames,
  resumed, refused by code, handshake failures, the latest marker's arrival times).
- ``{"op": "mark", "marker": "m1"}``: reset the arrival record of the data frame containing
  ``marker``; ``stats`` then reports how many got it and when the first and last did
  (``time.monotonic()``, which is system-wide on Linux, so the coordinator can compare).
``"send_every": s`` makes each connection send a small text frame every ``s`` seconds (a bare
echo endpoint's rounds, the floor under an in-band heartbeat).

- ``{"op": "publish", "channel": "feed", "data": {...}}``: publish through the first open
  connection (the server does not echo it to that one); replies with ``sent``, its
  ``time.monotonic()``.
- ``{"op": "presence", "channel": "feed", "count": k}``: ask ``k`` open connections (spread
  over the list, so over the server's workers) for the channel's members; replies with the
  member counts they answered.
- ``{"op": "close"}``: close every connection and exit.

A connection the server closes reconnects (``reconnect`` in ``connect``): resumable ones with
their newest token and their count of data frames, after a random delay of at most ``jitter``
seconds, retrying refused handshakes (503 while a worker drains, connection refused while it
is down) with a capped backoff. A resume answered ``resumed`` counts as resumed; one answered
``resume_failed`` counts as refused (by code): both are the explicit answers the storm target
asks for. Data frames are counted per connection (the resume count) and checked in order
against their numbers when the publisher numbers them (``{"n": k, ...}`` with ``"order": true``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import sys
import time
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

HELLO = b'{"$ws":"hello","v":1}'
PREFIX = b'{"$ws"'


class Stats:
    def __init__(self) -> None:
        self.connected = 0
        self.subscribed = 0
        self.pongs = 0
        self.data = 0
        self.resumed = 0
        self.fresh = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()  # resume_failed's reasons
        self.closes: collections.Counter[int] = collections.Counter()
        self.handshake_failures = 0
        self.out_of_order = 0
        self.marker = b""
        self.presence: list[int] = []
        self.marked = 0
        self.first = 0.0
        self.last = 0.0

    def as_dict(self, clients: list[Client]) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "open": sum(1 for c in clients if c.transport is not None),
            "subscribed": self.subscribed,
            "pongs": self.pongs,
            "data": self.data,
            "resumed": self.resumed,
            "fresh": self.fresh,
            "refused": dict(self.refused),
            "reasons": dict(self.reasons),
            "closes": {str(k): v for k, v in self.closes.items()},
            "handshake_failures": self.handshake_failures,
            "out_of_order": self.out_of_order,
            "pending": sum(1 for c in clients if c.reconnecting),
            "marked": self.marked,
            "first": self.first,
            "last": self.last,
        }


STATS = Stats()


class Client:
    """One logical client: its session token, its count of data frames, its current socket."""

    __slots__ = ("count", "last_n", "options", "reconnecting", "subscribed", "token", "transport")

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.token: str | None = None
        self.count = 0
        self.last_n = -1
        self.transport: WSTransport | None = None
        self.subscribed: asyncio.Future[None] | None = None
        self.reconnecting = False

    def url(self) -> str:
        base = self.options["url"]
        if not self.options.get("resume"):
            return base
        if self.token is None:
            return f"{base}?ws_resume=new"
        return f"{base}?ws_resume={self.token}&ws_seq={self.count}"

    async def open(self) -> bool:
        source = self.options.get("source")
        kwargs: dict[str, Any] = {"local_addr": (source, 0)} if source else {}
        try:
            await ws_connect(lambda: Listener(self), self.url(), websocket_handshake_timeout=30, **kwargs)
        except Exception:
            STATS.handshake_failures += 1
            return False
        return True

    async def reconnect(self) -> None:
        if self.reconnecting:
            return
        self.reconnecting = True
        try:
            await asyncio.sleep(random.uniform(0, self.options.get("jitter", 0.25)))
            delay = 0.5
            while not await self.open():
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, 8.0)
        finally:
            self.reconnecting = False


class Listener(WSListener):  # type: ignore[misc]
    def __init__(self, client: Client) -> None:
        self.client = client

    def on_ws_connected(self, transport: WSTransport) -> None:
        client = self.client
        client.transport = transport
        STATS.connected += 1
        options = client.options
        if options.get("hello"):
            transport.send(WSMsgType.TEXT, HELLO)
        channel = options.get("subscribe")
        if (channel and client.token is None) or (channel and not options.get("resume")):
            transport.send(WSMsgType.TEXT, json.dumps({"$ws": "subscribe", "channel": channel}).encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if payload.startswith(PREFIX):
                self.control(transport, payload)
            else:
                self.data(payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            STATS.closes[frame.get_close_code() or 1005] += 1
            transport.send_close(frame.get_close_code() or 1000)
            transport.disconnect()

    def control(self, transport: WSTransport, payload: bytes) -> None:
        client = self.client
        if payload.startswith(b'{"$ws":"ping"'):
            message = json.loads(payload)
            transport.send(WSMsgType.TEXT, b'{"$ws":"pong","id":%d}' % message["id"])
            STATS.pongs += 1
            return
        message = json.loads(payload)
        op = message["$ws"]
        if op == "session":
            if client.token is None:
                STATS.fresh += 1
            elif client.options.get("resume") and message.get("seq") == 0:
                client.count = 0  # a fresh session after a refusal
            client.token = message["token"]
        elif op == "resumed":
            STATS.resumed += 1
            client.token = message["token"]
        elif op == "resume_failed":
            STATS.refused[message.get("code", "?")] += 1
            STATS.reasons[str(message.get("reason", ""))[:80]] += 1
            client.count, client.last_n, client.token = 0, -1, None
            channel = client.options.get("subscribe")
            if channel:  # a fresh session: subscribe again
                transport.send(WSMsgType.TEXT, json.dumps({"$ws": "subscribe", "channel": channel}).encode())
        elif op == "presence":
            STATS.presence.append(len(message.get("members", ())))
        elif op == "subscribed":
            STATS.subscribed += 1
            if client.subscribed is not None and not client.subscribed.done():
                client.subscribed.set_result(None)

    def data(self, payload: bytes) -> None:
        client = self.client
        client.count += 1
        STATS.data += 1
        if client.options.get("order") and payload.startswith(b'{"n":'):
            n = int(payload[5 : payload.index(b",")])
            if n <= client.last_n:
                STATS.out_of_order += 1
            client.last_n = n
        if STATS.marker and STATS.marker in payload:
            now = time.monotonic()
            STATS.marked += 1
            STATS.first = STATS.first or now
            STATS.last = now

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        client = self.client
        if client.transport is transport:
            client.transport = None
        if client.options.get("reconnect") and not CLOSING:
            task = asyncio.get_running_loop().create_task(client.reconnect())
            TASKS.add(task)
            task.add_done_callback(TASKS.discard)


CLOSING = False
#: Tasks of this process (the loop keeps only weak references).
TASKS: set[asyncio.Task[None]] = set()


async def connect(clients: list[Client], options: dict[str, Any]) -> dict[str, Any]:
    new = [Client(options) for _ in range(options["count"])]
    loop = asyncio.get_running_loop()
    for client in new:
        client.subscribed = loop.create_future()
    batch = options.get("batch", 200)
    started = time.monotonic()
    for i in range(0, len(new), batch):
        await asyncio.gather(*(c.open() for c in new[i : i + batch]))
    clients += new
    every = options.get("send_every")
    if every:  # each connection sends one small text frame every ``every`` seconds, staggered
        for client in new:
            TASKS.add(loop.create_task(tick(client, every)))
    waiting = [c.subscribed for c in new if c.transport is not None and c.subscribed is not None]
    if options.get("subscribe") and waiting:
        await asyncio.wait(waiting, timeout=options.get("timeout", 120))
    return {"opened": sum(1 for c in new if c.transport is not None), "seconds": time.monotonic() - started}


def publish(clients: list[Client], command: dict[str, Any]) -> float:
    for client in clients:
        if client.transport is not None:
            frame = {"$ws": "publish", "channel": command["channel"], "data": command["data"]}
            client.transport.send(WSMsgType.TEXT, json.dumps(frame).encode())
            return time.monotonic()
    return 0.0


async def presence(clients: list[Client], command: dict[str, Any]) -> list[int]:
    live = [c for c in clients if c.transport is not None]
    asked = live[:: max(1, len(live) // command.get("count", 5))][: command.get("count", 5)]
    STATS.presence = []
    for client in asked:
        assert client.transport is not None
        client.transport.send(WSMsgType.TEXT, json.dumps({"$ws": "presence", "channel": command["channel"]}).encode())
    deadline = time.monotonic() + command.get("timeout", 30)
    while len(STATS.presence) < len(asked) and time.monotonic() < deadline:  # noqa: ASYNC110 - answers of many sockets
        await asyncio.sleep(0.05)
    return list(STATS.presence)


async def tick(client: Client, every: float) -> None:
    await asyncio.sleep(random.uniform(0, every))
    while not CLOSING:
        if client.transport is not None:
            client.transport.send(WSMsgType.TEXT, b"tick-tock-tick-tock")
        await asyncio.sleep(every)


async def main() -> None:
    global CLOSING
    clients: list[Client] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        op = command["op"]
        if op == "connect":
            reply = await connect(clients, command)
        elif op == "stats":
            reply = STATS.as_dict(clients)
        elif op == "publish":
            reply = {"sent": publish(clients, command)}
        elif op == "presence":
            reply = {"members": await presence(clients, command)}
        elif op == "mark":
            STATS.marker, STATS.marked, STATS.first, STATS.last = command["marker"].encode(), 0, 0.0, 0.0
            reply = {}
        elif op == "close":
            CLOSING = True
            for client in clients:
                if client.transport is not None:
                    client.transport.disconnect()
            reply = {}
        else:
            reply = {"error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if op == "close":
            await asyncio.sleep(0.5)
            return


if __name__ == "__main__":
    asyncio.run(main())
