"""RepeatedLog: the first occurrence at once, the rest counted and summarised (fake clock)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asgi_ws._repeated import RepeatedLog, flush_all
from asgi_ws.rooms import Rooms
from tests.support.logs import captured_logs

NAME = "asgi_ws.test.repeated"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == NAME]


def test_first_at_once_then_one_summary_per_interval_with_the_count() -> None:
    clock = Clock()
    repeated = RepeatedLog(logging.getLogger(NAME), 60.0, clock=clock)
    with captured_logs(logging.INFO) as records:
        assert repeated.warning("refused %s", "a") is True
        for i in range(499):
            clock.now += 0.01
            assert repeated.warning("refused %s", f"b{i}") is False
        assert lines(records) == ["refused a"]
        clock.now += 60.0  # the next one after the interval carries the count of the others
        assert repeated.warning("refused %s", "c") is True
        assert lines(records)[1] == "refused c (499 more like this in the last 65 s)"
        clock.now += 61.0  # a quiet interval: the next one is written plain
        assert repeated.warning("refused %s", "d") is True
    assert lines(records) == ["refused a", "refused c (499 more like this in the last 65 s)", "refused d"]
    assert all(r.levelno == logging.WARNING for r in records)


def test_keys_are_counted_apart_and_flush_writes_the_latest_with_the_others() -> None:
    clock = Clock()
    repeated = RepeatedLog(logging.getLogger(NAME), 60.0, clock=clock)
    with captured_logs(logging.INFO) as records:
        for key in ("drain", "cap", "drain", "cap", "cap", "drain"):
            clock.now += 1
            repeated.log(logging.WARNING, "%s refused", key, key=key)
        repeated.log(logging.INFO, "once", key="alone")
        repeated.flush()  # at exit: what is pending, the latest occurrence standing for the others
        repeated.flush()  # nothing twice
    assert lines(records) == [
        "drain refused",
        "cap refused",
        "once",
        "drain refused (1 more like this in the last 5.0 s)",
        "cap refused (1 more like this in the last 4.0 s)",
    ]


def test_keys_are_bounded_and_a_disabled_level_counts_nothing() -> None:
    clock = Clock()
    repeated = RepeatedLog(logging.getLogger(NAME), 60.0, clock=clock, max_keys=3)
    with captured_logs(logging.INFO) as records:
        for i in range(10):  # ten keys, three tracked: the others share one, still counted
            repeated.warning("kind %d", i, key=i)
        assert len(repeated._states) == 4
        assert lines(records) == ["kind 0", "kind 1", "kind 2", "kind 3"]
        repeated.flush()
        assert lines(records)[-1] == "kind 9 (5 more like this in the last 0.0 s)"
        assert repeated.log(logging.DEBUG, "not enabled") is False
    assert "not enabled" not in lines(records)


async def test_a_timer_on_the_running_loop_writes_the_summary_at_the_end_of_the_interval() -> None:
    repeated = RepeatedLog(logging.getLogger(NAME), 0.2)
    with captured_logs(logging.INFO) as records:
        for i in range(100):
            repeated.warning("flood %d", i)
        assert lines(records) == ["flood 0"]
        for _ in range(100):
            if len(lines(records)) == 2:
                break
            await asyncio.sleep(0.02)
        flush_all()  # nothing left: the timer wrote it
    assert lines(records) == ["flood 0", "flood 99 (98 more like this in the last 0.2 s)"]


async def test_rooms_log_garbage_and_a_full_presence_backlog_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Rooms() as rooms:
        with captured_logs(logging.WARNING) as records:
            for _ in range(300):
                rooms._on_broker_message("asgi_ws!presence", b"\xff")
            queue = rooms._presence.out
            assert queue is not None
            monkeypatch.setattr(queue, "put_nowait", lambda item: (_ for _ in ()).throw(asyncio.QueueFull()))
            for _ in range(300):
                rooms._presence.queue([{"t": "x"}])
            rooms._repeated.flush()  # what the timer, or the exit, would write
    text = [r.getMessage() for r in records if r.name == "asgi_ws.rooms"]
    assert rooms.stats.malformed == 300
    assert len(text) == 4, text
    assert text[0].startswith("rooms ignored a presence message from the broker") and "(1 malformed so far)" in text[0]
    assert text[1].startswith("presence backlog full")
    assert text[2].endswith("(300 malformed so far) (298 more like this in the last 0.0 s)"), text[2]
    assert text[3].startswith("presence backlog full") and text[3].endswith("(298 more like this in the last 0.0 s)")
