"""The outbound path against fake servers whose writability the test controls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asgi_ws import BackpressureMiddleware, ConfigurationError, QueueLimits
from asgi_ws.outbound import Outbound, OutboundTotals, message_size
from asgi_ws.types import Message


class FakeServer:
    """Writes like uvicorn's sansio/wsproto: wait until writable, then write."""

    def __init__(self) -> None:
        self.written: list[Message] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.error: BaseException | None = None

    async def send(self, message: Message) -> None:
        await self.writable.wait()
        if self.error is not None:
            raise self.error
        self.written.append(message)

    def texts(self) -> list[str]:
        return [m.get("text", m["type"]) for m in self.written]


class LegacyLikeServer(FakeServer):
    """Writes like uvicorn's legacy implementation: write, then drain; two blocked drains assert."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None

    async def send(self, message: Message) -> None:
        self.written.append(message)
        if self.paused:
            assert self._waiter is None or self._waiter.cancelled(), "two writers in drain"
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def resume(self) -> None:
        self.paused = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def text(value: str) -> Message:
    return {"type": "websocket.send", "text": value}


def make(server: FakeServer, **limits: Any) -> tuple[Outbound, list[tuple[int, str]]]:
    closes: list[tuple[int, str]] = []
    outbound = Outbound(server.send, lambda code, reason: closes.append((code, reason)))
    if limits:
        outbound.configure(QueueLimits(**limits), OutboundTotals())
    return outbound, closes


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_while_the_client_keeps_up_writes_are_eager_and_make_no_task() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=10)
    tasks_before = len(asyncio.all_tasks())
    for i in range(100):
        await outbound.send(text(str(i)))
        assert server.texts()[-1] == str(i)  # written before send() returned
    assert not outbound.backlogged and len(asyncio.all_tasks()) == tasks_before
    assert outbound.stats() == {"queued": 0, "queued_bytes": 0, "sent": 100, "dropped": 0, "conflated": 0}


async def test_a_blocked_write_moves_to_a_writer_and_the_rest_queues_in_order() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=10)
    server.writable.clear()
    for i in range(5):
        await outbound.send(text(str(i)))  # returns at once: the queue has room
    assert outbound.backlogged and outbound.queued == 4 and server.texts() == []
    server.writable.set()
    await settle()
    assert server.texts() == ["0", "1", "2", "3", "4"]
    assert not outbound.backlogged and outbound.sent == 5


@pytest.mark.parametrize(
    ("policy", "expected", "dropped"),
    [
        ("drop_oldest", ["0", "7", "8", "9"], 6),
        ("drop_newest", ["0", "1", "2", "3"], 6),
    ],
)
async def test_drop_policies(policy: str, expected: list[str], dropped: int) -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=3, max_bytes=None, policy=policy)
    server.writable.clear()
    for i in range(10):
        await outbound.send(text(str(i)))
    assert outbound.queued == 3 and outbound.dropped == dropped
    assert outbound.totals is not None and outbound.totals.dropped == dropped and outbound.totals.queued == 3
    server.writable.set()
    await settle()
    assert server.texts() == expected
    assert outbound.totals.queued == 0


async def test_conflate_keeps_the_newest_message_per_key_in_place() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=10, policy="conflate", conflate_key=lambda m: m["text"].split(":")[0])
    server.writable.clear()
    for value in ["X:0", "AAPL:1", "MSFT:1", "AAPL:2", "AAPL:3", "MSFT:2", "GOOG:1"]:
        await outbound.send(text(value))
    assert outbound.conflated == 3 and outbound.queued == 3
    server.writable.set()
    await settle()
    assert server.texts() == ["X:0", "AAPL:3", "MSFT:2", "GOOG:1"]


async def test_conflate_with_a_full_queue_uses_the_fallback() -> None:
    server = FakeServer()
    outbound, closes = make(
        server, max_messages=2, policy="conflate", conflate_key=lambda m: m["text"][0], fallback="drop_newest"
    )
    server.writable.clear()
    for value in ["x", "a1", "b1", "a2", "c1"]:  # c1 has no twin and the queue is full
        await outbound.send(text(value))
    assert (outbound.conflated, outbound.dropped, closes) == (1, 1, [])
    server.writable.set()
    await settle()
    assert server.texts() == ["x", "a2", "b1"]


async def test_per_message_override_and_its_key_never_reach_the_server() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=2, policy="drop_oldest")
    server.writable.clear()
    await outbound.send(text("in flight"))
    await outbound.send(text("keep 1"))
    await outbound.send(text("keep 2"))
    await outbound.send({**text("price 1"), "asgi_ws": {"overflow": "drop_newest"}})
    assert outbound.dropped == 1
    await outbound.send({**text("tick 1"), "asgi_ws": {"overflow": "conflate", "key": "tick"}})  # falls back
    server.writable.set()
    await settle()
    assert all("asgi_ws" not in m for m in server.written)
    with pytest.raises(ConfigurationError):
        server.writable.clear()
        await outbound.send(text("x"))
        await outbound.send({**text("y"), "asgi_ws": {"overflow": "maybe"}})


async def test_close_policy_closes_the_slow_consumer() -> None:
    server = FakeServer()
    outbound, closes = make(server, max_messages=2, policy="close")
    server.writable.clear()
    for i in range(4):
        await outbound.send(text(str(i)))
    assert closes == [(1013, "slow consumer")]
    assert outbound.totals is not None and outbound.totals.closed_for_slowness == 1


async def test_block_waits_for_room_then_times_out_to_the_fallback() -> None:
    server = FakeServer()
    outbound, closes = make(server, max_messages=1, policy="block", block_timeout=0.05, fallback="drop_newest")
    server.writable.clear()
    await outbound.send(text("0"))
    await outbound.send(text("1"))
    waiting = asyncio.create_task(outbound.send(text("2")))
    await settle()
    assert not waiting.done()  # the app's send waits for room
    server.writable.set()
    await waiting
    await settle()
    assert server.texts() == ["0", "1", "2"]
    server.writable.clear()
    await outbound.send(text("3"))
    await outbound.send(text("4"))
    await outbound.send(text("5"))  # no room within block_timeout: dropped by the fallback
    assert outbound.dropped == 1 and closes == []


async def test_max_bytes_bounds_the_queue_but_an_empty_queue_takes_one_big_message() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=None, max_bytes=100, policy="drop_newest")
    server.writable.clear()
    await outbound.send(text("in flight"))
    await outbound.send(text("x" * 500))  # larger than max_bytes, but the queue is empty
    await outbound.send(text("y"))
    assert outbound.queued == 1 and outbound.queued_bytes == 500 and outbound.dropped == 1
    server.writable.set()
    await settle()
    await outbound.send(text("a" * 60))
    server.writable.clear()
    await outbound.send(text("b" * 60))
    await outbound.send(text("c" * 60))
    await outbound.send(text("d" * 60))  # 60 + 60 > 100
    assert outbound.queued_bytes == 60 and outbound.dropped == 2


def test_message_size_counts_utf8_bytes_of_text() -> None:
    assert message_size(text("hello")) == 5
    assert message_size(text("é" * 10)) == 20
    assert message_size(text("€😀")) == 3 + 4
    assert message_size(text("\ud800")) == 3  # a lone surrogate is counted, never raises
    assert message_size({"type": "websocket.send", "bytes": "é".encode() * 3}) == 6
    assert message_size({"type": "websocket.send", "bytes": None, "text": "ab"}) == 2
    assert message_size({"type": "websocket.send"}) == 0


async def test_max_bytes_counts_encoded_bytes_not_characters() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=None, max_bytes=100, policy="drop_newest")
    server.writable.clear()
    await outbound.send(text("in flight"))
    await outbound.send(text("é" * 40))  # 40 characters, 80 bytes
    await outbound.send(text("é" * 15))  # 80 + 30 bytes > 100 (55 characters would fit)
    assert outbound.queued == 1 and outbound.queued_bytes == 80 and outbound.dropped == 1
    assert outbound.offer(text("€" * 7)) is False  # 21 more bytes: over, dropped
    assert outbound.offer(text("€" * 6)) is True and outbound.queued_bytes == 98


async def test_control_messages_pass_queued_ones_but_never_the_write_in_flight() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=10)
    server.writable.clear()
    await outbound.send(text("in flight"))
    await outbound.send(text("queued"))
    outbound.send_control('{"$ws":"ping","id":1}')
    server.writable.set()
    await settle()
    assert server.texts() == ["in flight", '{"$ws":"ping","id":1}', "queued"]
    assert outbound.sent == 2  # control frames are not application messages


async def test_offer_never_raises_for_a_broken_connection() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=10)
    server.error = ConnectionResetError("gone")
    assert outbound.offer(text("x")) is False
    assert isinstance(outbound.failed, ConnectionResetError)
    assert outbound.offer(text("y")) is False
    with pytest.raises(ConnectionResetError):
        await outbound.send(text("z"))


async def test_offer_applies_the_fallback_instead_of_blocking() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=1, policy="block", fallback="drop_newest")
    server.writable.clear()
    assert outbound.offer(text("0")) and outbound.offer(text("1"))
    assert outbound.offer(text("2")) is False and outbound.dropped == 1


async def test_closing_abandons_a_blocked_write_without_a_second_drain() -> None:
    server = LegacyLikeServer()
    outbound, _ = make(server, max_messages=10)
    server.paused = True
    await outbound.send(text("blocked"))
    await outbound.send(text("queued"))
    abandoned = server._waiter
    closer = outbound.close(4408, "gone")
    await settle()
    assert abandoned is not None and abandoned.cancelled()  # the abandoned write's drain was cancelled...
    assert server._waiter is not abandoned  # ...before the close frame started its own (no assertion)
    server.resume()
    await asyncio.wait_for(closer, 1)
    assert [m["type"] for m in server.written] == ["websocket.send", "websocket.close"]
    assert outbound.dropped == 1  # the queued message
    assert outbound.offer(text("late")) is False


async def test_without_limits_library_frames_wait_for_the_apps_write() -> None:
    server = LegacyLikeServer()
    outbound, _ = make(server)
    server.paused = True
    app_write = asyncio.create_task(outbound.send(text("app")))
    await settle()
    outbound.send_control('{"$ws":"ping","id":1}')  # must not start a second blocked write
    assert outbound.offer(text("fan-out")) is False  # no queue without limits: dropped, counted
    server.resume()
    await app_write
    await settle()
    assert server.texts() == ["app", '{"$ws":"ping","id":1}']
    assert outbound.dropped == 1


async def test_totals_sum_over_connections() -> None:
    totals = OutboundTotals()
    servers = [FakeServer(), FakeServer()]
    outbounds = []
    for server in servers:
        outbound = Outbound(server.send, lambda c, r: None)
        outbound.configure(QueueLimits(max_messages=2, policy="drop_oldest"), totals)
        outbounds.append(outbound)
        server.writable.clear()
    for outbound in outbounds:
        for i in range(5):
            await outbound.send(text(str(i)))
    assert totals.as_dict() == {
        "sent": 0,
        "dropped": 4,
        "conflated": 0,
        "closed_for_slowness": 0,
        "queued": 4,
        "backlogged": 2,
        "batches": 0,
    }
    for server in servers:
        server.writable.set()
    await settle()
    assert totals.as_dict()["sent"] == 6 and totals.queued == 0 and totals.backlogged == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_messages": None, "max_bytes": None}, "unbounded"),
        ({"max_messages": 0}, "positive integer"),
        ({"policy": "yolo"}, "policy must be one of"),
        ({"fallback": "block"}, "fallback must be"),
        ({"policy": "conflate"}, "conflate_key"),
        ({"block_timeout": 0}, "block_timeout"),
        ({"close_code": 999}, "close_code"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        QueueLimits(**kwargs)
    with pytest.raises(ConfigurationError, match=message):
        BackpressureMiddleware(lambda scope, receive, send: None, **kwargs)


async def test_a_message_offered_as_the_writer_finishes_is_neither_stranded_nor_overtaken() -> None:
    # The writer task writes its last queued message and ends; callbacks scheduled before its
    # done callback run in between. A message offered there must not wait behind a writer
    # that is already gone (to be overtaken by the next one written eagerly).
    server = FakeServer()
    outbound, _ = make(server, max_messages=10)
    loop = asyncio.get_running_loop()
    written = server.send

    async def send(message: Message) -> None:
        await written(message)
        if message.get("text") == "1":
            loop.call_soon(outbound.offer, text("2"))

    outbound._send = send
    server.writable.clear()
    outbound.offer(text("0"))
    outbound.offer(text("1"))
    server.writable.set()
    await settle()
    outbound.offer(text("3"))
    await settle()
    assert server.texts() == ["0", "1", "2", "3"] and outbound.queued == 0
