"""The shared Redis client: bursts beyond the pool size wait for a connection, never fail."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis

from secure_ws import state
from secure_ws.exceptions import BackendUnavailable
from secure_ws.gate import caps, throttle, userstate

#: Well over redis-py's 100-connection default, which raised instead of waiting.
CONCURRENT = 3 * state.MAX_CONNECTIONS


async def test_three_hundred_gate_redis_calls_in_flight_are_all_answered() -> None:
    async def one_handshake_worth(index: int) -> bool:
        ip = f"10.9.{index // 250}.{index % 250}"
        allowed = await throttle.allow_handshake(ip, rate_per_minute=60_000, burst=1_000)
        await userstate._read_generation(str(index))
        slot = await caps.acquire_slot(uuid.uuid4().hex, index, ip, 5, 5, ttl=30)
        await slot.release()
        return allowed

    results = await asyncio.gather(
        *(one_handshake_worth(i) for i in range(CONCURRENT)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not [f for f in failures if isinstance(f, BackendUnavailable)], failures[:3]
    assert failures == []
    assert results == [True] * CONCURRENT


async def test_async_client_uses_a_bounded_blocking_pool() -> None:
    client = state.get_redis()
    assert client is not None
    pool = client.connection_pool
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
    assert pool.max_connections == state.MAX_CONNECTIONS
    assert pool.timeout == state.SOCKET_TIMEOUT


def test_sync_client_uses_a_bounded_blocking_pool() -> None:
    client: Any = state.get_sync_redis()
    assert client is not None
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == state.MAX_CONNECTIONS
    assert client.ping() is True
