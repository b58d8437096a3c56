from __future__ import annotations

import asyncio

import pytest

from asgi_ws.timers import TimerService, timer_service


async def test_timers_fire_in_deadline_order_and_never_early() -> None:
    service = TimerService(asyncio.get_running_loop(), resolution=0.01)
    fired: list[tuple[str, float, float]] = []
    start = service.time()
    done = asyncio.Event()

    def record(name: str, when: float) -> None:
        fired.append((name, when, service.time()))
        if len(fired) == 3:
            done.set()

    for name, delay in [("c", 0.09), ("a", 0.03), ("b", 0.06)]:
        service.call_at(start + delay, lambda n=name, w=start + delay: record(n, w))
    assert len(service) == 3
    await asyncio.wait_for(done.wait(), 5)
    assert [name for name, _, _ in fired] == ["a", "b", "c"]
    assert all(actual >= when for _, when, actual in fired)
    assert len(service) == 0


async def test_one_loop_handle_serves_many_timers() -> None:
    loop = asyncio.get_running_loop()
    service = TimerService(loop, resolution=0.05)
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    fired = []
    for i in range(10_000):
        service.call_later(0.05 + (i % 7) * 0.001, lambda i=i: fired.append(i))
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
    while len(fired) < 10_000:
        await asyncio.sleep(0.02)
    assert sorted(fired) == list(range(10_000))


async def test_cancelled_timers_do_not_fire_and_are_compacted() -> None:
    service = TimerService(asyncio.get_running_loop(), resolution=0.01)
    fired: list[int] = []
    timers = [service.call_later(0.02, lambda i=i: fired.append(i)) for i in range(2000)]
    for timer in timers[:1500]:
        timer.cancel()
        timer.cancel()  # twice is harmless
    assert len(service) == 500
    assert service._size < 2000  # compaction dropped the cancelled entries
    await asyncio.sleep(0.1)
    assert sorted(fired) == list(range(1500, 2000))
    timers[-1].cancel()  # cancelling a fired timer is harmless
    assert len(service) == 0


async def test_a_failing_callback_is_logged_and_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    service = TimerService(asyncio.get_running_loop(), resolution=0.01)
    fired = asyncio.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    service.call_later(0.01, boom)
    service.call_later(0.01, fired.set)
    await asyncio.wait_for(fired.wait(), 5)
    assert "asgi_ws timer callback failed" in caplog.text


async def test_earlier_timer_rearms_the_handle() -> None:
    service = TimerService(asyncio.get_running_loop(), resolution=0.01)
    order: list[str] = []
    service.call_later(5, lambda: order.append("late"))
    early = asyncio.Event()
    service.call_later(0.02, lambda: (order.append("early"), early.set()))
    await asyncio.wait_for(early.wait(), 2)
    assert order == ["early"]


async def test_timer_service_is_one_per_loop() -> None:
    assert timer_service() is timer_service()


async def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TimerService(asyncio.get_running_loop(), resolution=0)
