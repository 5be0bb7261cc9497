"""A connection-cap slot whose release failed is released once Redis answers again.

Redis sits behind a cuttable proxy: while it is cut, a closing connection cannot give its
slot back. The slot must not keep counting for ``CONNECTION_SLOT_TTL`` (60 s here) once
Redis is reachable again: a user at the cap would be locked out for that long after every
Redis restart or failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate import caps
from secure_ws.state import close_redis
from tests.reliability.conftest import PrivateRedis
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

SLOT_TTL = 60  # seconds: far past the deadline, so expiry cannot pass for a release
DEADLINE = 20.0  # seconds; a bound against hanging, not a timing assertion


@pytest.fixture
def redis_proxy(private_redis: PrivateRedis) -> Iterator[TcpProxy]:
    proxy = TcpProxy(private_redis.port)
    proxy.restore()
    yield proxy
    proxy.cut()


async def test_a_failed_release_is_retried_until_redis_takes_it(redis_proxy: TcpProxy) -> None:
    await close_redis()
    url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    with override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": url}):
        try:
            held = await caps.acquire_slot("held", 7, "10.1.2.3", 1, 5, ttl=SLOT_TTL)
            redis_proxy.cut()
            await held.release()  # never raises; Redis did not hear it
            redis_proxy.restore()
            give_up = time.monotonic() + DEADLINE
            while True:
                try:
                    again = await caps.acquire_slot("again", 7, "10.1.2.3", 1, 5, ttl=SLOT_TTL)
                    break
                except (Refused, BackendUnavailable):
                    assert time.monotonic() < give_up, "the released slot still counts"
                    await asyncio.sleep(0.1)
            await again.release()
        finally:
            await close_redis()
