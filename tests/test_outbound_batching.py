"""Batching on the outbound path, against fake servers whose writability the test controls."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ws import BackpressureMiddleware, BatchLimits, ConfigurationError, HeartbeatMiddleware
from asgi_ws.client.dispatch import dispatch
from asgi_ws.outbound import HANDLED, SLOW, Outbound
from asgi_ws.protocol import BATCH_PREFIX, decode, decode_batch, encode_batch
from asgi_ws.types import Message, Receive, Scope, Send
from tests.hardening.strategies import VALUES, dumps
from tests.support.session import Harness
from tests.test_outbound import FakeServer, LegacyLikeServer, make, settle, text


def batching(server: FakeServer, max_messages: int = 256, max_bytes: int = 65_536) -> Outbound:
    """An outbound path (queue: 1,000 messages, drop_oldest) whose client asked for batches."""
    outbound, _ = make(server, max_messages=1000)
    outbound.start_batching(BatchLimits(max_messages, max_bytes))
    return outbound


def frames(server: FakeServer) -> list[list[str] | str | bytes]:
    """What the client gets: a batch frame as the list of its messages, any other frame as it is."""
    out: list[list[str] | str | bytes] = []
    for message in server.written:
        if message["type"] != "websocket.send":
            out.append(message["type"])
        elif message.get("bytes") is not None:
            out.append(message["bytes"])
        elif message["text"].startswith(BATCH_PREFIX):
            texts = decode_batch(decode(message["text"], max_length=None))
            assert texts is not None
            out.append(texts)
        else:
            out.append(message["text"])
    return out


def unpacked(server: FakeServer) -> list[str | bytes]:
    """Every message the client's unpacking hands to the application, in order."""
    out: list[str | bytes] = []
    for frame in frames(server):
        out.extend(frame if isinstance(frame, list) else [frame])
    return out


async def test_a_burst_in_one_loop_turn_goes_as_the_first_message_alone_then_one_batch() -> None:
    server = FakeServer()
    outbound = batching(server)
    for i in range(10):
        assert outbound.offer(text(str(i)))
    assert frames(server) == ["0"]  # the first at once; the rest wait for the end of the turn
    assert outbound.backlogged  # (a flush waits for them)
    await settle()
    assert frames(server) == ["0", [str(i) for i in range(1, 10)]]
    assert (outbound.sent, outbound.batches, outbound.totals and outbound.totals.batches) == (10, 1, 1)
    assert not outbound.backlogged


async def test_one_message_a_turn_goes_alone_at_once_every_time() -> None:
    server = FakeServer()
    outbound = batching(server)
    for i in range(5):
        assert outbound.write_now(text(str(i))) == HANDLED
        assert frames(server)[-1] == str(i)  # written before write_now returned
        await asyncio.sleep(0)
    await settle()
    assert frames(server) == ["0", "1", "2", "3", "4"] and outbound.batches == 0


async def test_a_connection_that_did_not_ask_never_gets_a_batch() -> None:
    server = FakeServer()
    outbound, _ = make(server, max_messages=1000)
    for i in range(50):
        outbound.offer(text(str(i)))
    await settle()
    assert frames(server) == [str(i) for i in range(50)] and outbound.batches == 0


@pytest.mark.parametrize(
    ("max_messages", "max_bytes", "sizes"), [(4, 65_536, [1, 4, 4, 2]), (100, 25, [1, 2, 2, 2, 2, 2])]
)
async def test_batches_are_bounded_in_messages_and_bytes(max_messages: int, max_bytes: int, sizes: list[int]) -> None:
    server = FakeServer()
    outbound = batching(server, max_messages, max_bytes)
    sent = [f"m{i:08d}" for i in range(11)]  # 10 bytes each
    for message in sent:
        outbound.offer(text(message))
    await settle()
    assert [len(f) if isinstance(f, list) else 1 for f in frames(server)] == sizes
    assert unpacked(server) == sent


async def test_binary_and_oversized_messages_go_alone_in_their_place() -> None:
    server = FakeServer()
    outbound = batching(server, max_bytes=50)
    outbound.offer(text("a"))
    outbound.offer(text("b"))
    outbound.offer(text("c"))
    outbound.offer({"type": "websocket.send", "bytes": b"\x00bin"})
    outbound.offer(text("d"))
    outbound.offer(text("x" * 51))
    outbound.offer(text("e"))
    outbound.offer(text("f"))
    outbound.offer(text("lone \ud800 surrogate"))  # cannot be sent: alone, so its error stays its own
    await settle()
    assert frames(server) == ["a", ["b", "c"], b"\x00bin", "d", "x" * 51, ["e", "f"], "lone \ud800 surrogate"]


async def test_what_queued_behind_a_blocked_write_goes_in_batch_frames_in_order() -> None:
    server = FakeServer()
    outbound = batching(server, max_messages=4)
    server.writable.clear()
    sent: list[str | bytes] = []
    for i in range(11):
        message: Message = text(str(i)) if i != 6 else {"type": "websocket.send", "bytes": b"six"}
        sent.append(message.get("text") or message["bytes"])
        outbound.offer(message)
        await asyncio.sleep(0)  # one a turn: only the blocked write makes them wait
    assert outbound.queued == 10
    server.writable.set()
    await settle()
    assert frames(server) == ["0", ["1", "2", "3", "4"], "5", b"six", ["7", "8", "9", "10"]]
    assert unpacked(server) == sent and outbound.sent == 11 and outbound.batches == 2


async def test_a_batch_whose_write_blocks_hands_over_to_the_writer_and_order_holds() -> None:
    server = FakeServer()
    outbound = batching(server, max_messages=3)
    outbound.offer(text("0"))
    server.writable.clear()
    for i in range(1, 8):  # 1-3 fill a batch whose write blocks; the rest queue behind it
        outbound.offer(text(str(i)))
    assert outbound._writer is not None and outbound.queued == 4
    server.writable.set()
    await settle()
    assert frames(server) == ["0", ["1", "2", "3"], ["4", "5", "6"], "7"]


async def test_control_frames_pass_waiting_messages_and_a_blocked_one_keeps_them_in_order() -> None:
    server = FakeServer()
    outbound = batching(server)
    outbound.offer(text("0"))
    outbound.offer(text("1"))
    outbound.offer(text("2"))
    server.writable.clear()
    outbound.send_control('{"$ws":"ping","id":1}')  # blocks: "1" and "2" queue first, then "3"
    outbound.offer(text("3"))
    server.writable.set()
    await settle()
    assert frames(server) == ["0", '{"$ws":"ping","id":1}', ["1", "2", "3"]]


async def test_the_apps_close_and_an_awaited_send_come_after_what_waits() -> None:
    server = FakeServer()
    outbound = batching(server)
    outbound.offer(text("0"))
    outbound.offer(text("1"))
    await outbound.send({**text("2"), "asgi_ws": {"overflow": "drop_newest"}})  # per-message options
    outbound.offer(text("3"))
    await outbound.send({"type": "websocket.close", "code": 1000})
    assert frames(server) == ["0", "1", "2", "3", "websocket.close"]


async def test_a_close_drops_what_waits_and_counts_it() -> None:
    server = FakeServer()
    outbound = batching(server)
    for i in range(5):
        outbound.offer(text(str(i)))
    closer = outbound.close(1001, "going away")
    await asyncio.wait_for(closer, 5)
    await settle()
    assert frames(server) == ["0", "websocket.close"] and outbound.dropped == 4
    assert outbound.write_now(text("late")) == SLOW and outbound.offer(text("late")) is False


async def test_legacy_like_server_never_sees_two_writes_in_flight() -> None:
    server = LegacyLikeServer()
    outbound = batching(server, max_messages=2)
    server.paused = True
    for i in range(7):
        outbound.offer(text(str(i)))
    server.resume()
    await settle()
    server.resume()
    await settle()
    assert unpacked(server) == [str(i) for i in range(7)]


def test_the_batch_frame_keeps_every_message_exact() -> None:
    texts = ["", "plain", 'quote " backslash \\', "tab\tnewline\n\x00", "é€😀", '{"$ws":"ping"}', "[1,2]"]
    frame = encode_batch(texts)
    assert frame.startswith(BATCH_PREFIX)
    assert json.loads(frame) == {"$ws": "batch", "m": texts}
    assert decode_batch(decode(frame, max_length=None)) == texts
    assert decode_batch({"$ws": "batch", "m": ["a", 1]}) is None
    assert decode_batch({"$ws": "batch"}) is None


@pytest.mark.parametrize("kwargs", [{"max_messages": 1}, {"max_bytes": 0}, {"max_messages": True}])
def test_batch_limits_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="batch"):
        BatchLimits(**kwargs)


class EncodingServer(FakeServer):
    """Encodes text as uvicorn does: a lone surrogate fails the write."""

    async def send(self, message: Message) -> None:
        text = message.get("text")
        if text is not None:
            text.encode("utf-8")
        await super().send(message)


async def test_a_text_that_cannot_be_sent_is_never_batched_so_its_error_is_its_own() -> None:
    server = EncodingServer()
    outbound = batching(server)
    server.writable.clear()
    for message in ("0", "1", "2", "bad \ud800", "4"):
        outbound.offer(text(message))
        await asyncio.sleep(0)
    server.writable.set()
    await settle()
    # What came before it went, in a batch; the write of the bad one failed alone, as it would unbatched.
    assert frames(server) == ["0", ["1", "2"]]
    assert isinstance(outbound.failed, UnicodeEncodeError) and outbound.dropped == 1 and outbound.sent == 3


async def test_readmitted_messages_keep_their_order_with_what_queues_after_them() -> None:
    server = FakeServer()
    outbound = batching(server, max_messages=1000)
    outbound.offer(text("0"))
    for i in range(1, 5):
        outbound.offer(text(str(i)))  # wait for the end of the turn
    server.writable.clear()
    outbound.send_control('{"$ws":"ping"}')  # its write blocks: 1-4 go to the queue, ahead of 5-9
    for i in range(5, 10):
        outbound.offer(text(str(i)))
    assert outbound.queued == 9 and not outbound._batch.pending  # type: ignore[union-attr]
    server.writable.set()
    await settle()
    assert frames(server) == ["0", '{"$ws":"ping"}', [str(i) for i in range(1, 10)]]
    assert outbound.sent == 10 and outbound.dropped == 0


async def test_a_failed_write_drops_what_waits_for_the_end_of_the_turn_and_counts_it() -> None:
    server = FakeServer()
    outbound = batching(server)
    outbound.offer(text("0"))
    outbound.offer(text("1"))
    outbound.offer(text("2"))
    server.error = ConnectionResetError("peer gone")
    assert outbound.offer({"type": "websocket.send", "bytes": b"b"}) is False  # flushes 1-2 (which fail)
    await settle()
    assert frames(server) == ["0"] and isinstance(outbound.failed, ConnectionResetError)
    assert outbound.dropped == 2 and outbound.sent == 1  # the batch's two, accepted and never written
    assert outbound.offer(text("late")) is False and outbound.write_now(text("late")) == SLOW


async def test_the_end_of_the_app_flushes_what_waits() -> None:
    server = FakeServer()
    outbound = batching(server)
    for i in range(3):
        outbound.offer(text(str(i)))
    await outbound.flush(1.0)  # (what the connection does when the application returns)
    assert frames(server) == ["0", ["1", "2"]] and not outbound.backlogged


# -- negotiation, and what a client may send -----------------------------------------------------


def burst_app(count: int = 5) -> Any:
    """Accepts; on "go" sends ``count`` messages in one burst (no await suspends)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "go":
                for i in range(count):
                    await send({"type": "websocket.send", "text": f"m{i}"})
            else:
                await send({"type": "websocket.send", "text": f"echo {message.get('text')}"})

    return app


async def burst(ws: Harness, count: int = 5) -> list[list[str] | str]:
    """Ask for a burst; return its frames, batches as the lists of their messages."""
    ws.send_text("go")
    got: list[list[str] | str] = []
    while sum(len(f) if isinstance(f, list) else 1 for f in got) < count:
        frame = await ws.next_text()
        if frame.startswith(BATCH_PREFIX):
            texts = decode_batch(decode(frame, max_length=None))
            assert texts is not None
            got.append(texts)
        else:
            got.append(frame)
    return got


async def hello_and_burst(value: Any) -> None:
    async with Harness(BackpressureMiddleware(burst_app())) as ws:
        ws.send_text(dumps({"$ws": "hello", "v": 1, "batch": value}, ascii_only=True))
        answer = await ws.next_json()
        if answer["$ws"] == "error":  # a value no JSON parser reads back (NaN, a lone surrogate...): refused whole
            assert answer["code"] in {"bad_json", "too_deep"}, answer
        else:
            assert answer["$ws"] == "welcome", answer
            assert answer["features"]["batch"] == {"max_messages": 256, "max_bytes": 65_536}
        asked = value is True and answer["$ws"] == "welcome"
        expected: list[list[str] | str] = ["m0", ["m1", "m2", "m3", "m4"]] if asked else [f"m{i}" for i in range(5)]
        assert await burst(ws) == expected
        # A client may not send a batch: it is an operation the server does not handle, answered
        # as such; the connection goes on.
        ws.send_text('{"$ws":"batch","m":["a","b"]}')
        error = await ws.next_json()
        assert (error["$ws"], error["code"], error["ref"]) == ("error", "unknown_op", "batch")
        ws.send_text("still there")
        assert await ws.next_text() == "echo still there"


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.just(True), VALUES))
def test_any_batch_value_in_hello_is_answered_and_only_true_asks(value: Any) -> None:
    asyncio.run(hello_and_burst(value))


async def test_hello_batch_values_that_look_like_true_do_not_ask() -> None:
    for value in ("true", 1, 1.0, [True], {"on": True}, None):
        await hello_and_burst(value)


async def test_a_client_sending_hostile_batch_frames_is_answered_never_broken() -> None:
    async with Harness(BackpressureMiddleware(burst_app())) as ws:
        ws.send_json({"$ws": "hello", "v": 1, "batch": True})
        assert (await ws.next_json())["$ws"] == "welcome"
        for hostile in (
            '{"$ws":"batch"}', '{"$ws":"batch","m":[1,{"$ws":"ping"}]}', '{"$ws":"batch","m":"' + "x" * 70_000 + '"}',
            '{"$ws":"batch","m":["\\ud800"]}', '{"$ws":"batch","m":[' * 40, '{"$ws":"batch","m":["a"]',
        ):  # fmt: skip
            ws.send_text(hostile)
            reply = await ws.next_json()
            assert reply["$ws"] == "error" and reply["code"] in {"unknown_op", "too_large", "bad_json", "too_deep"}, (
                reply
            )
        assert await burst(ws) == ["m0", ["m1", "m2", "m3", "m4"]]  # batching goes on


async def test_the_middlewares_batch_option() -> None:
    for option, feature in (
        (False, None), (BatchLimits(8, 1024), {"max_messages": 8, "max_bytes": 1024}),
    ):  # fmt: skip
        async with Harness(BackpressureMiddleware(burst_app(10), batch=option)) as ws:
            ws.send_json({"$ws": "hello", "v": 1, "batch": True})
            assert (await ws.next_json())["features"].get("batch") == feature
            assert await burst(ws, 10) == (
                ["m0", [f"m{i}" for i in range(1, 9)], "m9"] if feature else [f"m{i}" for i in range(10)]
            )
    with pytest.raises(ConfigurationError, match="batch"):
        BackpressureMiddleware(burst_app(), batch="yes")  # type: ignore[arg-type]


async def test_without_backpressure_middleware_no_batch_is_offered_nor_sent() -> None:
    async with Harness(HeartbeatMiddleware(burst_app())) as ws:
        ws.send_json({"$ws": "hello", "v": 1, "batch": True})
        assert "batch" not in (await ws.next_json())["features"]
        assert await burst(ws) == [f"m{i}" for i in range(5)]


# -- the Python client's side ---------------------------------------------------------------------


async def test_the_python_client_unpacks_a_batch_into_data_frames_even_unasked_and_ignores_a_malformed_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data: list[str | bytes] = []

    async def take(frame: str | bytes) -> None:
        data.append(frame)

    link: Any = SimpleNamespace(data=take)
    await dispatch(link, {"$ws": "batch", "m": ["a", '{"$ws":"ping"}', ""]})  # a string is data, whatever it holds
    assert data == ["a", '{"$ws":"ping"}', ""]
    with caplog.at_level(logging.WARNING, "asgi_ws.client"):
        for malformed in ({"$ws": "batch"}, {"$ws": "batch", "m": ["a", 1]}, {"$ws": "batch", "m": "ab"}):
            await dispatch(link, malformed)
    assert data == ["a", '{"$ws":"ping"}', ""] and caplog.text.count("ignored a batch frame") == 3
