"""Database unavailable: authentication fails closed, and serving resumes when it returns.

The daphne under test reaches PostgreSQL through a proxy that the test cuts, so the
machine's database is never touched. A user the process has not seen (nothing cached)
must be refused while the database is away: the gate cannot tell whether that user is
active, so it does not guess. The refusal's audit record is buffered while the database is
away and written once it is back, and the same user is served again without restarting
anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import InvalidStatus

from tests.conftest import access_token_for
from tests.reliability.conftest import open_client, ping
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RECOVERY_DEADLINE = 30.0  # seconds; a bound against hanging, not a timing assertion


async def _outcome(server: Any, token: str) -> str:
    try:
        conn = await open_client(server, token)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    await ping(conn)
    await conn.close()
    return "served"


def _audited_usernames_and_reasons() -> set[tuple[str, str]]:
    from django.db import connection

    from secure_ws.audit.models import ConnectionRecord

    try:
        return set(ConnectionRecord.objects.values_list("username", "reason"))
    finally:
        connection.close()  # this worker thread's own connection: never leave it open


async def _wait_for_audit(expected: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Poll the audit table until ``expected`` rows are there (bounded), return what is."""
    started = time.monotonic()
    rows: set[tuple[str, str]] = set()
    while time.monotonic() - started < RECOVERY_DEADLINE:
        rows = await sync_to_async(_audited_usernames_and_reasons, thread_sensitive=False)()
        if expected <= rows:
            break
        await asyncio.sleep(0.5)
    return rows


async def test_database_outage_fails_closed_and_recovers(
    daphne_server: Any, demo_users: dict[str, Any], db_proxy: TcpProxy
) -> None:
    from django.db import connection

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@127.0.0.1:{db_proxy.port}/{db['NAME']}"
    server = daphne_server(env={"DATABASE_URL": database_url})
    alice = access_token_for(demo_users["alice"])
    bob = access_token_for(demo_users["bob"])
    assert await _outcome(server, alice) == "served"

    db_proxy.cut()
    assert not db_proxy.accepts(), "the database proxy still accepts connections"
    while_down = await _outcome(server, bob)

    db_proxy.restore()
    started = time.monotonic()
    after = "never tried"
    while time.monotonic() - started < RECOVERY_DEADLINE:
        after = await _outcome(server, bob)
        if after == "served":
            break
        await asyncio.sleep(0.5)

    # The refusal happened while the database was away: its audit row was buffered and
    # is written once the database is back (the writer retries; nothing is lost).
    # The refused attempt has no username: the user could not be loaded, which is the point.
    audited = await _wait_for_audit({("", "backend_unavailable"), ("alice", "")})
    log = server.log()
    print(
        f"\ndatabase outage: unseen user while down {while_down}; after restore {after}; "
        f"audit rows {sorted(audited)}"
    )
    assert while_down == "http 403"
    assert '"username": "bob"' in log or '"reason": "backend_unavailable"' in log
    assert "backend_unavailable" in log, "the refusal was not recorded with its reason"
    assert after == "served"
    assert ("", "backend_unavailable") in audited, "the refusal's audit row was lost"
    assert ("alice", "") in audited
    assert server.process.poll() is None
    assert "Exception inside application" not in log
    assert bob not in log
    assert alice not in log
