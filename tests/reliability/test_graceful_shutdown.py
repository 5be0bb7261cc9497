"""SIGTERM to daphne: every client gets a "going away" close and the audit trail is complete.

daphne's own shutdown (``Server.kill_all_applications``, a Twisted "before shutdown"
trigger) cancels every application task and lets the reactor drop the sockets without a
close frame: clients saw 1006 and no close was audited. ``secure_ws.shutdown`` (installed
by the AppConfig under daphne) sends each open WebSocket a real 1001 close first, waits
for the closing handshakes, and flushes the audit writer before the reactor stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed

from secure_ws.codes import CloseCode, Outcome, private_close_code
from tests.conftest import access_token_for
from tests.reliability.conftest import open_client, ping

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

GOING_AWAY = {CloseCode.GOING_AWAY, private_close_code(CloseCode.GOING_AWAY)}


async def _close_code(conn: Any) -> int | str | None:
    """The close code the client receives, ``None`` for a drop without a close frame."""
    try:
        async with asyncio.timeout(20):
            while True:
                await conn.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return "hang"


def _audited_close_codes(names: tuple[str, ...]) -> dict[str, int | None]:
    """username -> close code of the audit table's connection rows (written at shutdown)."""
    from django.db import connection

    from secure_ws.audit.models import ConnectionRecord

    try:
        rows = ConnectionRecord.objects.filter(username__in=names, outcome=Outcome.ACCEPTED.value)
        return dict(rows.values_list("username", "close_code"))
    finally:
        connection.close()  # this worker thread's own connection: never leave it open


def _closed_records(log: str) -> dict[str, int]:
    """username -> close code of the audit's ``closed`` lines in the server log."""
    closed = {}
    for line in log.splitlines():
        start = line.find("{")
        if start < 0 or '"event": "closed"' not in line:
            continue
        record = json.loads(line[start:])
        closed[record["username"]] = record["close_code"]
    return closed


async def test_sigterm_closes_clients_with_going_away_and_flushes_audit(
    daphne_server: Any, demo_users: dict[str, Any]
) -> None:
    server = daphne_server()
    names = ("alice", "bob", "carol")
    conns = [await open_client(server, access_token_for(demo_users[n])) for n in names]
    for conn in conns:
        await ping(conn)

    server.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(_close_code(conn) for conn in conns))
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("daphne did not exit within 30 s of SIGTERM")
    closed = _closed_records(server.log())
    rows = await sync_to_async(_audited_close_codes, thread_sensitive=False)(names)

    print(f"\ngraceful shutdown: client close codes {codes}; audited closes {closed}; rows {rows}")
    assert all(code in GOING_AWAY for code in codes), codes
    assert {name: closed.get(name) in GOING_AWAY for name in names} == dict.fromkeys(names, True)
    # Written to the database before the process exited, not only logged.
    assert {name: rows.get(name) in GOING_AWAY for name in names} == dict.fromkeys(names, True)


def test_shutdown_hooks_do_nothing_without_a_daphne_server() -> None:
    """Outside daphne (uvicorn, tests) the reactor never runs and no server is found.

    ``daphne`` in ``INSTALLED_APPS`` imports its server module (to install the reactor for
    ``runserver``), so the triggers may be registered; with no daphne ``Server`` they
    close nothing, and under uvicorn they never fire because the reactor never runs.
    """
    code = (
        "import django; django.setup();"
        "from secure_ws.shutdown import close_daphne_websockets, install_daphne_shutdown;"
        "install_daphne_shutdown(); install_daphne_shutdown();"
        "assert close_daphne_websockets() == []"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
