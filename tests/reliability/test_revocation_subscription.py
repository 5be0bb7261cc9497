"""The revocation subscription fails closed: a process that cannot hear revocations serves nobody.

Each test points this process at a private ``redis-server`` and breaks it: killed outright
(SIGKILL: the socket drops) or frozen (SIGSTOP: the socket stays up, nothing answers). Every
registered connection must be closed 1013 ``backend_unavailable``, new ones refused while
the subscription is down, and served again once it is back.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from secure_ws.codes import CloseCode, Reason
from secure_ws.exceptions import BackendUnavailable
from secure_ws.sessions import pubsub
from secure_ws.sessions.pubsub import ensure_subscribed
from secure_ws.sessions.registry import get_registry
from secure_ws.sessions.revocation import kick_user
from secure_ws.state import close_redis
from tests.consumer_helpers import watch
from tests.reliability.conftest import PrivateRedis

pytestmark = pytest.mark.timeout(120)

LOST = (CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)
#: Bounds against hanging, not timing assertions.
DEADLINE = 20.0


@pytest.fixture
async def on_private_redis(private_redis: PrivateRedis) -> AsyncIterator[PrivateRedis]:
    await close_redis()
    with override_settings(SECURE_WS={**settings.SECURE_WS, "REDIS_URL": private_redis.url}):
        yield private_redis
        await close_redis()


async def subscribed_again() -> bool:
    """Poll until new connections may register again (under :data:`DEADLINE`)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            await ensure_subscribed()
            return True
        except BackendUnavailable:
            await asyncio.sleep(0.1)
    return False


async def assert_down_then_back(server: PrivateRedis, resume: Any) -> None:
    with pytest.raises(BackendUnavailable):
        await ensure_subscribed()
    resume()
    assert await subscribed_again()
    fresh = await watch(user_id=2)
    await kick_user(2)
    assert await fresh.ended() == (CloseCode.FORBIDDEN, Reason.REVOKED)
    get_registry().remove(fresh)


async def test_a_killed_redis_closes_every_connection_and_refuses_new_ones_until_back(
    on_private_redis: PrivateRedis,
) -> None:
    server = on_private_redis
    conns = [await watch(user_id=1), await watch(session_id="s-1")]
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=10)
    for conn in conns:
        assert await conn.ended(wait=DEADLINE) == LOST
        get_registry().remove(conn)
    await assert_down_then_back(server, server.start)


async def test_a_frozen_redis_is_noticed_by_ping_and_fails_closed(
    on_private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pubsub, "HEALTH_INTERVAL", 0.3)
    server = on_private_redis
    conn = await watch(user_id=1)
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        assert await conn.ended(wait=DEADLINE) == LOST
        get_registry().remove(conn)
        with pytest.raises(BackendUnavailable):
            await ensure_subscribed()
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert await subscribed_again()
