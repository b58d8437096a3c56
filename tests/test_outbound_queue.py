"""The outbound queue's decisions, without asyncio: any sequence of offers and writes, each policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from asgi_ws import ConfigurationError, QueueLimits
from asgi_ws.outbound.queue import CLOSE, CONFLATED, DROPPED, ENQUEUED, OutboundQueue
from asgi_ws.types import Message

POLICY_NAMES = ["block", "drop_oldest", "drop_newest", "conflate", "close"]
FALLBACKS = ["drop_oldest", "drop_newest", "close"]


def key_of(message: Message) -> Any:
    return message.get("key")


@st.composite
def limits(draw: st.DrawFn) -> QueueLimits:
    max_messages = draw(st.none() | st.integers(1, 6))
    max_bytes = draw(st.integers(1, 60) if max_messages is None else st.none() | st.integers(1, 60))
    return QueueLimits(
        max_messages=max_messages,
        max_bytes=max_bytes,
        policy=draw(st.sampled_from(POLICY_NAMES)),
        fallback=draw(st.sampled_from(FALLBACKS)),
        conflate_key=key_of,
    )


offer_op = st.tuples(
    st.just("offer"),
    st.integers(0, 30),  # size
    st.none() | st.sampled_from(POLICY_NAMES),  # a per-message policy, or the limits' own
    st.none() | st.sampled_from("abc"),  # conflation key
    st.booleans(),  # binary
)
operations = st.lists(
    st.one_of(
        offer_op,
        offer_op,
        offer_op,
        st.tuples(st.just("pop")),
        st.tuples(st.just("pop_texts"), st.integers(1, 5), st.integers(1, 60)),  # a batch: messages, bytes
        st.tuples(st.just("protocol")),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@dataclass
class Run:
    """What a test saw: every verdict, what was written (popped), and each queued message's place."""

    queue: OutboundQueue
    offered: int = 0
    written: list[Message] = field(default_factory=list)
    # The arrival of the message that made the slot a message sits in (conflate replaces in place).
    slot: dict[int, int] = field(default_factory=dict)
    # The conflation key of the slot a message sits in, for those queued under ``conflate`` with one.
    keyed: dict[int, str] = field(default_factory=dict)
    protocol_pushed: int = 0
    protocol_cleared: int = 0

    def app_sizes(self) -> list[int]:
        return [m["size"] for m in self.queue.messages() if m["type"] == "websocket.send"]


def effective(policy: str, limits: QueueLimits) -> str:
    return limits.fallback if policy in ("block", "conflate") else policy


@settings(max_examples=400, deadline=None)
@given(limits=limits(), ops=operations)
def test_any_sequence_of_offers_and_writes_keeps_bounds_order_and_counts(limits: QueueLimits, ops: list[Any]) -> None:
    run = Run(OutboundQueue(limits))
    queue = run.queue
    next_id = 0
    for op in ops:
        if op[0] == "offer":
            _, size, policy, key, binary = op
            next_id += 1
            message = {"type": "websocket.send", "id": next_id, "size": size, "key": key}
            message["bytes" if binary else "text"] = b"x" if binary else "x"
            chosen = policy or limits.policy
            before = queue.messages()
            had_app = any(m["type"] == "websocket.send" for m in before)
            twin = next(
                (m for m in before if chosen == "conflate" and key is not None and run.keyed.get(m.get("id")) == key),
                None,
            )
            fitted = queue.fits(size)
            verdict = queue.offer(message, size, chosen, key if chosen == "conflate" else None)
            event(f"verdict {verdict} {effective(chosen, limits)}")
            run.offered += 1
            after = queue.messages()
            if twin is not None:
                # A queued message of the same key is replaced in place, whatever the limits.
                assert verdict == CONFLATED
                assert after == [message if m is twin else m for m in before]
                run.slot[next_id] = run.slot.pop(twin["id"])
                run.keyed[next_id] = run.keyed.pop(twin["id"])
            elif fitted:
                assert verdict == ENQUEUED and after == [*before, message]
                run.slot[next_id] = next_id
                if chosen == "conflate" and key is not None:
                    run.keyed[next_id] = key
            elif effective(chosen, limits) == "drop_oldest" and had_app:
                # Older application messages go, oldest first, until this one fits; the rest keep
                # their order. (When the application's own close entries fill the count, they all go
                # and this one too.)
                kept = [m for m in after if m is not message]
                assert kept == [m for m in before if any(k is m for k in kept)]
                dropped = [m for m in before if not any(k is m for k in kept)]
                assert dropped == [m for m in before if m["type"] == "websocket.send"][: len(dropped)]
                if verdict == ENQUEUED:
                    assert after[-1] is message
                    run.slot[next_id] = next_id
                    if chosen == "conflate" and key is not None:
                        run.keyed[next_id] = key
                else:
                    assert verdict == DROPPED and all(m["type"] == "websocket.close" for m in after)
                    assert not queue.fits(size)
            else:
                assert verdict == (CLOSE if effective(chosen, limits) == "close" else DROPPED)
                assert after == before  # the new message is dropped, nothing else moves
        elif op[0] == "pop":
            if len(queue):
                run.written.append(queue.pop().message)
        elif op[0] == "pop_texts":
            _, max_messages, max_bytes = op
            before = queue.messages()
            taken = [entry.message for entry in queue.pop_texts(max_messages, max_bytes)]
            # The oldest entries, consecutive text messages, within both bounds (the first one
            # whatever its size), and as many as the bounds allow.
            assert before[: len(taken)] == taken
            assert all(m["type"] == "websocket.send" and "text" in m for m in taken)
            assert len(taken) <= max_messages
            assert len(taken) <= 1 or sum(m["size"] for m in taken) <= max_bytes
            rest = before[len(taken) :]
            if rest and rest[0]["type"] == "websocket.send" and "text" in rest[0]:
                total = sum(m["size"] for m in taken) + rest[0]["size"]
                assert len(taken) == max_messages or (taken and total > max_bytes)
            run.written.extend(taken)
        elif op[0] == "protocol":
            queue.push_protocol({"type": "websocket.close", "code": 1000})
            run.protocol_pushed += 1
        else:
            run.protocol_cleared += sum(1 for m in queue.messages() if m["type"] == "websocket.close")
            queue.clear()
        check(run, limits)
    while len(queue):
        run.written.append(queue.pop().message)
    check(run, limits)


def check(run: Run, limits: QueueLimits) -> None:
    queue = run.queue
    sizes = run.app_sizes()
    # The counters are what is queued.
    assert queue.queued == len(sizes) and queue.queued_bytes == sum(sizes)
    # Bounds: the count always (the application's close aside); the bytes unless one message is
    # alone, or a conflated message grew in place (replacing is never refused).
    assert len(sizes) <= (limits.max_messages or len(sizes))
    grown = any(m["id"] in run.keyed for m in queue.messages() if m["type"] == "websocket.send")
    if limits.max_bytes is not None and len(sizes) > 1 and not grown:
        assert queue.queued_bytes <= limits.max_bytes
    # Every message offered was written, is queued, was dropped, or was replaced by a newer one.
    written_app = [m for m in run.written if m["type"] == "websocket.send"]
    assert run.offered == len(written_app) + queue.queued + queue.dropped + queue.conflated
    # Order: messages are written in the order their slots arrived.
    slots = [run.slot[m["id"]] for m in written_app]
    assert slots == sorted(slots) and len(set(slots)) == len(slots)
    # The application's own close is never dropped, and never counted.
    closes = sum(1 for m in run.written if m["type"] == "websocket.close")
    queued_closes = sum(1 for m in queue.messages() if m["type"] == "websocket.close")
    assert closes + queued_closes + run.protocol_cleared == run.protocol_pushed


def test_an_empty_queue_takes_one_message_larger_than_max_bytes() -> None:
    queue = OutboundQueue(QueueLimits(max_messages=None, max_bytes=10, policy="drop_newest"))
    assert queue.offer({"type": "websocket.send", "text": "x" * 50}, 50, "drop_newest") == ENQUEUED
    assert queue.offer({"type": "websocket.send", "text": "y"}, 1, "drop_newest") == DROPPED
    assert (queue.queued, queue.queued_bytes, queue.dropped) == (1, 50, 1)


def test_drop_oldest_with_only_the_apps_close_queued_drops_the_new_message() -> None:
    queue = OutboundQueue(QueueLimits(max_messages=1, policy="drop_oldest"))
    queue.push_protocol({"type": "websocket.close"})
    assert queue.offer({"type": "websocket.send", "text": "late"}, 4, "drop_oldest") == DROPPED
    assert queue.messages() == [{"type": "websocket.close"}] and queue.dropped == 1


def test_an_unknown_policy_is_refused() -> None:
    queue = OutboundQueue(QueueLimits())
    with pytest.raises(ConfigurationError, match="overflow policy"):
        queue.offer({"type": "websocket.send", "text": "x"}, 1, "maybe")
