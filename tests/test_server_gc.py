"""CollectorPolicy: full garbage collections by connection churn, not by message traffic."""

from __future__ import annotations

import asyncio
import gc

import pytest

from asgi_ws.connection import COUNTS
from asgi_ws.server import CollectorPolicy


def test_a_full_collection_is_due_by_churn_or_by_period() -> None:
    policy = CollectorPolicy(churn=0.25, min_closed=1000, period=600)
    policy._collected_at = 0.0
    assert not policy.due(1.0, closed=999, open_now=100)  # below the minimum
    assert policy.due(1.0, closed=1000, open_now=100)
    assert not policy.due(1.0, closed=12_000, open_now=50_000)  # below a quarter of the open ones
    assert policy.due(1.0, closed=12_500, open_now=50_000)
    assert not policy.due(599.0, closed=1, open_now=50_000)
    assert policy.due(600.0, closed=1, open_now=50_000)  # the period, once anything closed
    assert not policy.due(6000.0, closed=0, open_now=50_000)  # nothing closed: nothing to find


async def test_install_takes_the_full_collections_over_and_uninstall_gives_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = gc.get_threshold()
    policy = CollectorPolicy(young=5000, min_closed=10, check_every=0.05)
    try:
        policy.install(asyncio.get_running_loop())
        young, _, full = gc.get_threshold()
        assert young == 5000 and full >= 2**31 - 1  # no automatic full collection
        assert not policy.check(asyncio.get_running_loop().time())
        monkeypatch.setattr(COUNTS, "total", COUNTS.total + 10)  # ten connections came and went
        await asyncio.sleep(0.2)  # the periodic check finds them
        assert policy.collections == 1 and policy.seconds > 0
        await asyncio.sleep(0.1)
        assert policy.collections == 1  # not again until more close
    finally:
        policy.uninstall()
        gc.unfreeze()
    assert gc.get_threshold() == saved
