"""Redis restarted under traffic: fail closed while it is down, recover by itself after.

The daphne under test uses a private ``redis-server`` (never the machine's shared one) that
the test stops and starts again on the same port. While it is down, the gate cannot count
caps or buckets, so new connections must be refused cleanly (HTTP 403, or a close with
1013 / its daphne stand-in 4013), never accepted blind, never a 500 or a hang. Existing
connections either keep working or close with 1011/1013 (or 4011/4013). After Redis is
back, new connections are served again within seconds, without restarting daphne.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.codes import CloseCode, private_close_code
from tests.conftest import access_token_for
from tests.reliability.conftest import PrivateRedis, open_client, ping

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: How an open connection may end when the shared state goes away.
BACKEND_CLOSE_CODES = {
    CloseCode.INTERNAL_ERROR,
    CloseCode.TRY_AGAIN_LATER,
    private_close_code(CloseCode.INTERNAL_ERROR),
    private_close_code(CloseCode.TRY_AGAIN_LATER),
}
RECOVERY_DEADLINE = 30.0  # seconds; a bound against hanging, not a timing assertion


async def _existing_connection_outcome(conn: Any) -> str:
    """``"pong"`` if the connection still answers, else its close code (never a hang).

    It listens first: a server that closes on losing Redis does so at once, and a ping
    sent into a connection the server is closing races with the close frame.
    """
    try:
        try:
            async with asyncio.timeout(3):
                while True:
                    await conn.recv()
        except TimeoutError:
            pass
        await ping(conn, deadline=20)
        return "pong"
    except ConnectionClosed as exc:
        return str(exc.rcvd.code if exc.rcvd else None)


async def _new_connection_outcome(server: Any, token: str) -> str:
    """``"served"``, ``"http <status>"`` or ``"closed <code>"`` for a fresh connection."""
    try:
        conn = await open_client(server, token)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    try:
        await ping(conn, deadline=20)
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    await conn.close()
    return "served"


async def test_redis_restart_fails_closed_then_recovers(
    daphne_server: Any, demo_users: dict[str, Any], private_redis: PrivateRedis
) -> None:
    server = daphne_server(env={"REDIS_URL": private_redis.url})
    tokens = [access_token_for(demo_users[name]) for name in ("alice", "bob", "carol")]
    existing = [await open_client(server, token) for token in tokens]
    for conn in existing:
        await ping(conn)

    private_redis.stop()
    outcomes = await asyncio.gather(*(_existing_connection_outcome(c) for c in existing))
    while_down = [await _new_connection_outcome(server, tokens[0]) for _ in range(3)]

    private_redis.start()
    started = time.monotonic()
    after = "never tried"
    while time.monotonic() - started < RECOVERY_DEADLINE:
        after = await _new_connection_outcome(server, tokens[1])
        if after == "served":
            break
        await asyncio.sleep(0.5)
    recovered_in = time.monotonic() - started
    for conn in existing:
        await conn.close()

    print(
        f"\nredis restart: existing connections {outcomes}; new while down {while_down}; "
        f"after restart {after} in {recovered_in:.1f} s"
    )
    allowed_existing = {"pong"} | {str(int(code)) for code in BACKEND_CLOSE_CODES}
    assert set(outcomes) <= allowed_existing, outcomes
    allowed_refusals = {"http 403"} | {f"closed {int(c)}" for c in BACKEND_CLOSE_CODES}
    assert set(while_down) <= allowed_refusals, while_down
    assert after == "served", f"not served again within {RECOVERY_DEADLINE} s: {after}"
    assert server.process.poll() is None, "daphne died"
    log = server.log()
    assert "Exception inside application" not in log
    assert all(token not in log for token in tokens)
