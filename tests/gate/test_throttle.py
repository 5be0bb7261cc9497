"""Gate step 2: the per-IP handshake token bucket, in Redis and in-process."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from secure_ws.codes import Reason
from secure_ws.gate.client import ClientAddressMiddleware
from secure_ws.gate.throttle import (
    HandshakeThrottleMiddleware,
    TokenBucket,
    allow_handshake,
    rate_key_for,
)
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import set_gate


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    assert rate_key_for("2001:db8::1") == rate_key_for("2001:db8::ffff:1")
    assert rate_key_for("2001:db8::1") != rate_key_for("2001:db8:0:1::1")
    assert rate_key_for("198.51.100.1") != rate_key_for("198.51.100.2")


def test_local_bucket_allows_the_burst_then_refuses() -> None:
    bucket = TokenBucket()
    results = [bucket.allow("ip", rate_per_second=0.001, burst=3) for _ in range(5)]
    assert results == [True, True, True, False, False]


def test_local_bucket_forgets_the_oldest_keys_beyond_its_bound() -> None:
    bucket = TokenBucket(max_keys=2)
    for name in ("a", "b", "c"):
        bucket.allow(name, 1.0, 1)
    assert bucket.allow("a", 0.001, 1) is True  # "a" was evicted, so it starts full


async def test_redis_bucket_is_shared_and_refuses_after_the_burst(redis_client: Any) -> None:
    results = [await allow_handshake("198.51.100.20", 1, 3) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert await allow_handshake("198.51.100.21", 1, 3) is True


async def test_local_bucket_is_used_without_redis(settings: Any) -> None:
    set_gate(settings, REDIS_URL=None)
    results = [await allow_handshake("198.51.100.22", 1, 2) for _ in range(3)]
    assert results == [True, True, False]


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
async def test_middleware_refuses_beyond_the_burst(
    communicator: Any, caplog: pytest.LogCaptureFixture, settings: Any, redis_url: str | None
) -> None:
    set_gate(settings, REDIS_URL=redis_url)
    app = ClientAddressMiddleware(HandshakeThrottleMiddleware(info_consumer, rate=1, burst=2))
    outcomes = []
    for _ in range(3):
        comm = communicator(app, client=("198.51.100.30", 1))
        connected, _ = await comm.connect()
        outcomes.append(connected)
        if connected:
            await comm.disconnect()
        else:
            await comm.wait()
    assert outcomes == [True, True, False]
    assert f"reason={Reason.HANDSHAKE_RATE_LIMITED.value}" in caplog.text


async def test_unreachable_redis_fails_closed(
    communicator: Any, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    set_gate(settings, REDIS_URL="redis://127.0.0.1:1/0")
    app = HandshakeThrottleMiddleware(info_consumer)
    with caplog.at_level(logging.WARNING):
        connected, _ = await communicator(app).connect()
    assert not connected
    assert f"reason={Reason.BACKEND_UNAVAILABLE.value}" in caplog.text


async def test_redis_that_never_answers_fails_closed_within_the_deadline(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from secure_ws import state
    from secure_ws.exceptions import BackendUnavailable

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # swallow every command, never answer
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(state, "SOCKET_TIMEOUT", 0.3)
    set_gate(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(allow_handshake("198.51.100.40", 60, 20), 5)
    finally:
        await state.close_redis()
        server.close()
        await server.wait_closed()
