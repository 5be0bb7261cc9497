"""The audit admin in a real browser: Debian's chromium driven by Playwright.

Logs into the admin of a real daphne process, opens the dashboard and the connection list,
checks what an operator sees and saves screenshots under ``artifacts/screenshots/``. Tests
never write tracked files: ``scripts/docs-images`` copies the dashboard screenshot to the
picture in ``docs/audit.md``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import sync_playwright
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from secure_ws.audit.models import ConnectionRecord
from secure_ws.codes import APP_SUBPROTOCOL, Reason
from tests.conftest import DEMO_PASSWORD, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def seed_history(users: dict[str, Any]) -> None:
    """A day of plausible traffic, so the chart has something to draw."""
    rng = random.Random(7)
    now = timezone.now()
    reasons = [Reason.ORIGIN_REFUSED, Reason.CREDENTIALS_INVALID, Reason.TOKEN_EXPIRED]
    rows = []
    # Hours 1-22 only: the dashboard's window starts at the top of the hour 23 hours ago,
    # so an older row would fall out of it depending on the minute the test runs.
    for hour in range(1, 23):
        opened = now - timedelta(hours=hour, minutes=rng.randint(0, 50))
        for i in range(rng.randint(2, 9)):
            user = users[rng.choice(["alice", "bob", "carol"])]
            rows.append(
                ConnectionRecord(
                    connection_id=f"hist-{hour}-{i}",
                    user=user,
                    username=user.username,
                    client_ip=f"198.51.100.{rng.randint(2, 40)}",
                    origin="https://files.example.com",
                    auth_method="subprotocol",
                    outcome="accepted",
                    opened_at=opened,
                    closed_at=opened + timedelta(minutes=rng.randint(1, 30)),
                    duration=rng.randint(60, 1800),
                    close_code=1000,
                    messages_in=rng.randint(1, 200),
                    messages_out=rng.randint(1, 400),
                )
            )
        for i in range(rng.randint(0, 4)):
            rows.append(
                ConnectionRecord(
                    connection_id=f"hist-r-{hour}-{i}",
                    client_ip=f"203.0.113.{rng.randint(2, 9)}",
                    origin=rng.choice(["https://evil.example", "null", ""]),
                    outcome="refused",
                    reason=rng.choice(reasons),
                    opened_at=opened,
                    closed_at=opened,
                )
            )
    long_at = now - timedelta(hours=2)
    rows.append(
        ConnectionRecord(
            connection_id="hist-long",
            username="a-user-with-a-rather-long-name@example.com",
            client_ip="2001:db8:85a3:1234:5678:8a2e:370:7334",
            origin="https://" + "a-long-subdomain." * 6 + "example.com",
            outcome="refused",
            reason=Reason.ORIGIN_REFUSED,
            opened_at=long_at,
            closed_at=long_at,
        )
    )
    flood_at = now - timedelta(hours=5)
    rows.append(
        ConnectionRecord(
            connection_id="hist-flood",
            client_ip="203.0.113.66",
            origin="https://evil.example",
            outcome="refused",
            reason=Reason.ORIGIN_REFUSED,
            opened_at=flood_at,
            closed_at=flood_at,
            aggregated=True,
            count=37,
            note="refusals past the aggregation threshold",
        )
    )
    ConnectionRecord.objects.bulk_create(rows)


async def live_traffic(server: Any, token: str) -> Any:
    """Refused attempts and one connection left open (the "live now" count)."""
    for origin in ("https://evil.example", "https://evil.example", "null"):
        try:
            conn = await connect(
                server.ws_url + "/ws/files/",
                origin=origin,  # type: ignore[arg-type]
                subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
                proxy=None,
            )
            await conn.close()
        except InvalidStatus:
            pass
    conn = await connect(
        server.ws_url + "/ws/files/",
        origin=server.origin,
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        proxy=None,
    )
    await conn.send(json.dumps({"type": "ping"}))
    await conn.recv()
    return conn


def wait_for_live_row() -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ConnectionRecord.objects.filter(outcome="accepted", closed_at__isnull=True).exists():
            return
        time.sleep(0.1)


def test_operator_logs_in_and_reads_dashboard_and_connection_list(
    demo_users: dict[str, Any], daphne_server: Callable[..., Any], token_for: Callable[..., str]
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (apt-get install chromium)"
    seed_history(demo_users)
    server = daphne_server(env={"SECURE_COOKIES": "0"})
    loop = asyncio.new_event_loop()
    live = loop.run_until_complete(live_traffic(server, token_for(demo_users["alice"])))
    try:
        wait_for_live_row()
        # Playwright's sync API runs a loop in this thread: query the database before it.
        refused = ConnectionRecord.objects.filter(outcome="refused").aggregate(n=Sum("count"))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            page.goto(server.http_url + "/admin/login/?next=/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", DEMO_PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/")

            page.goto(server.http_url + "/admin/secure_ws/connectionrecord/dashboard/")
            assert page.locator("svg.sws-chart rect").count() > 10
            assert page.locator("#sws-live b").inner_text() == "1"
            assert page.locator("#sws-refused b").inner_text() == str(refused["n"])
            assert "203.0.113.66" in page.locator("#sws-top-ips").inner_text()
            page.screenshot(path=str(SCREENSHOTS / "audit-dashboard.png"), full_page=True)

            page.goto(server.http_url + "/admin/secure_ws/connectionrecord/?live=yes")
            assert page.locator("#result_list tbody tr").count() == 1
            assert "alice" in page.locator("#result_list").inner_text()
            page.set_viewport_size({"width": 1400, "height": 900})
            page.goto(server.http_url + "/admin/secure_ws/connectionrecord/")
            assert page.locator("#result_list tbody tr").count() > 20
            # The list fits a 1400-px screen: no horizontal scrolling, long values cut.
            # (the admin scrolls a too-wide table inside its .results box, not the page).
            overflow = page.evaluate(
                "() => { const box = document.querySelector('#changelist .results');"
                " return [box.scrollWidth, box.clientWidth,"
                " document.documentElement.scrollWidth]; }"
            )
            assert overflow[0] <= overflow[1], overflow
            assert overflow[2] <= 1400, overflow
            long_origin = page.locator('#result_list span[title^="https://a-long-subdomain."]')
            assert long_origin.first.inner_text().endswith("\u2026")
            page.screenshot(path=str(SCREENSHOTS / "audit-connection-list.png"), full_page=True)
            browser.close()
        # The CSP must not have blocked anything the pages need.
        assert [e for e in errors if "Content Security Policy" in e] == []
    finally:
        loop.run_until_complete(live.close())
        loop.close()
