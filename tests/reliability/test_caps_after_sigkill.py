"""A server process killed with SIGKILL holds no connection-cap slot past its lifetime.

Caps are counted in Redis across processes. A process that dies without closing its
connections cannot release their slots, so each slot carries a deadline that the live
process's heartbeat keeps moving (every ``CONNECTION_SLOT_TTL / 3`` seconds). A killed
process stops moving it: its slots stop counting once ``CONNECTION_SLOT_TTL`` has passed,
with no clean-up job and no restart of anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from secure_ws.codes import Outcome, Reason
from tests.conftest import ServerProcess, access_token_for
from tests.reliability.conftest import open_client, ping
from tests.reliability.slot_ttl_settings import CONNECTION_SLOT_TTL

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

SETTINGS = "tests.reliability.slot_ttl_settings"
#: How long the test waits for the slot at most: a hang guard, well past the lifetime.
HANG_GUARD = 3 * CONNECTION_SLOT_TTL + 10


async def cap_refusals(username: str) -> int:
    """How many of ``username``'s attempts the audit recorded as refused by the user cap."""
    from channels.db import database_sync_to_async

    from secure_ws.audit.models import ConnectionRecord

    def count() -> int:
        return ConnectionRecord.objects.filter(
            username=username,
            outcome=Outcome.REFUSED.value,
            reason=Reason.USER_CONNECTION_LIMIT.value,
        ).count()

    found: int = await database_sync_to_async(count)()
    return found


async def test_a_killed_process_frees_its_cap_slots_without_help(
    asgi_server: Callable[..., ServerProcess], demo_users: dict[str, Any]
) -> None:
    token = access_token_for(demo_users["alice"])
    doomed = asgi_server(settings_module=SETTINGS)
    survivor = asgi_server(settings_module=SETTINGS)
    held = await open_client(doomed, token)
    await ping(held)

    # alice's one slot is taken cluster-wide: the other process refuses her.
    with pytest.raises(InvalidStatus) as refused:
        await open_client(survivor, token)
    assert refused.value.response.status_code == 403

    doomed.process.kill()  # SIGKILL: no close, no release, no audit of the close
    doomed.process.wait(timeout=10)
    # Right after the kill the slot still counts: only its deadline frees it.
    with pytest.raises(InvalidStatus):
        await open_client(survivor, token)

    give_up = time.monotonic() + HANG_GUARD
    while True:
        try:
            conn = await open_client(survivor, token)
        except InvalidStatus as exc:
            status = exc.response.status_code
        else:
            break
        assert status == 403
        assert time.monotonic() < give_up, "the killed process's slot never expired"
        await asyncio.sleep(0.2)
    await ping(conn)  # admitted for real, and served
    await conn.close()
    with contextlib.suppress(Exception):
        await held.close()

    # Each refusal was the user cap, and the audit says so.
    for _ in range(40):
        if await cap_refusals("alice") >= 2:
            break
        await asyncio.sleep(0.25)
    assert await cap_refusals("alice") >= 2
