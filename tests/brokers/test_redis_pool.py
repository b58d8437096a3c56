"""The Redis broker's publishing pool (publishes and history reads): blocking, sized for a
reconnect storm by default (asgi_ws.brokers.redis.POOL_SIZE / POOL_TIMEOUT), and the URL's
``max_connections`` / ``timeout`` override both."""

from __future__ import annotations

import asyncio

from redis.asyncio import BlockingConnectionPool

from asgi_ws.brokers.redis import POOL_SIZE, POOL_TIMEOUT, RedisBroker


def _pool(broker: RedisBroker) -> BlockingConnectionPool:
    pool = broker._new_publisher().connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    return pool


def test_the_default_pool_blocks_and_is_sized_for_a_storm() -> None:
    pool = _pool(RedisBroker("redis://127.0.0.1:6379/0?history=100"))
    assert pool.max_connections == POOL_SIZE == 64
    assert pool.timeout == POOL_TIMEOUT == 30.0


def test_the_url_sets_the_pool() -> None:
    pool = _pool(RedisBroker("redis://127.0.0.1:6379/0?history=100&max_connections=3&timeout=0.5"))
    assert (pool.max_connections, pool.timeout) == (3, 0.5)


async def test_a_pool_of_one_serves_200_concurrent_history_reads_and_publishes(redis_url: str) -> None:
    broker = RedisBroker(f"{redis_url}?history=500&max_connections=1&timeout=10&prefix=asgi_ws_pool_test:")
    await broker.connect(lambda *args: None)
    try:
        first = await broker.publish("lobby", b"x")
        assert first is not None
        results = await asyncio.gather(
            *(broker.history("lobby", first) for _ in range(100)), *(broker.publish("lobby", b"y") for _ in range(100))
        )
        assert all(isinstance(r, list) for r in results[:100]) and all(isinstance(r, str) for r in results[100:])
        assert len(await broker.history("lobby", first) or []) == 100
    finally:
        await broker.close()
