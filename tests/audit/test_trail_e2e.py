"""The audit trail from outside: a scripted mix of attempts against a real server is all there.

N attempts (accepted, each kind of gate refusal, a refusal flood) must be accounted for as
exactly N in the database, no secret may reach any column, and every accepted connection's
row must carry its close. Each test runs on daphne and on uvicorn (``servers`` marker).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Sum
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.codes import APP_SUBPROTOCOL, Reason

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

FLOOD = 40
HANG_GUARD = 15


async def attempt(server: Any, *, origin: str | None = None, token: str | None = None) -> bool:
    """Try one handshake on ``/ws/files/``; return whether it was accepted (then close)."""
    subprotocols: list[Any] = [APP_SUBPROTOCOL]
    if token is not None:
        subprotocols.append(f"bearer.{token}")
    try:
        conn = await connect(
            server.ws_url + "/ws/files/",
            origin=origin or server.origin,  # type: ignore[arg-type]
            subprotocols=subprotocols,
            proxy=None,
            open_timeout=HANG_GUARD,
        )
    except InvalidStatus:
        return False
    await conn.send(json.dumps({"type": "ping"}))
    await asyncio.wait_for(conn.recv(), HANG_GUARD)
    await conn.close()
    return True


def accounted() -> int:
    return int(ConnectionRecord.objects.aggregate(n=Sum("count"))["n"] or 0)


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.1)


def test_every_attempt_is_accounted_for_and_nothing_secret_is_stored(
    demo_users: dict[str, Any], asgi_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    server = asgi_server(settings_module="tests.audit.daphne_settings")
    alice = demo_users["alice"]
    good = token_for(alice)
    expired = AccessToken.for_user(alice)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    secrets = [good, str(expired), "not.a.jwt-SECRET"]

    unknown_user = token_for(demo_users["mallory"], user_id=999999)

    async def script() -> tuple[list[bool], list[bool], list[bool]]:
        accepted = [await attempt(server, token=good) for _ in range(3)]
        refused = [
            await attempt(server, token=good, origin="https://evil.example"),
            await attempt(server),
            await attempt(server, token="not.a.jwt-SECRET"),
            await attempt(server, token=str(expired)),
            await attempt(server, token=unknown_user),
        ]
        flood = await asyncio.gather(
            *(attempt(server, token=good, origin="https://flood.example") for _ in range(FLOOD))
        )
        return accepted, refused, list(flood)

    accepted, refused, flood = asyncio.run(script())
    assert accepted == [True] * 3
    assert not any(refused)
    assert not any(flood)
    total = len(accepted) + len(refused) + FLOOD

    wait_until(lambda: accounted() >= total)
    server.stop()  # the writer also flushes at exit; nothing may be counted twice
    assert accounted() == total

    rows = ConnectionRecord.objects.all()
    assert rows.filter(outcome="accepted", closed_at__isnull=False, user=alice).count() == 3
    reasons = set(rows.filter(outcome="refused").values_list("reason", flat=True))
    assert {
        Reason.ORIGIN_REFUSED,
        Reason.CREDENTIALS_MISSING,
        Reason.CREDENTIALS_INVALID,
        Reason.TOKEN_EXPIRED,
    } <= reasons
    flood_rows = rows.filter(origin="https://flood.example")
    assert flood_rows.filter(aggregated=True).exists()
    assert flood_rows.aggregate(n=Sum("count"))["n"] == FLOOD
    assert flood_rows.count() < FLOOD

    dump = json.dumps([list(rows.values()), list(SecurityEvent.objects.values())], default=str)
    for secret in secrets:
        assert secret not in dump
        assert secret.split(".")[-1] not in dump  # not even the signature
    for secret in secrets:
        assert secret not in server.log()


def test_records_still_buffered_at_shutdown_are_written_on_sigterm(
    demo_users: dict[str, Any], asgi_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    server = asgi_server(settings_module="tests.audit.shutdown_settings")
    good = token_for(demo_users["bob"])

    async def script() -> list[bool]:
        return [
            *[await attempt(server, token=good) for _ in range(2)],
            *[await attempt(server, origin="https://evil.example") for _ in range(3)],
        ]

    assert asyncio.run(script()) == [True, True, False, False, False]
    assert accounted() == 0  # nothing written yet: the flush interval is an hour
    server.stop()  # SIGTERM
    assert server.process.returncode is not None
    assert accounted() == 5
    assert ConnectionRecord.objects.filter(outcome="accepted", closed_at__isnull=False).count() == 2
