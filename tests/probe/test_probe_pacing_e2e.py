"""The probe against the demo's shipped handshake throttle (60 per minute, burst 20).

``scripts/demo`` keeps secure_ws's default ``HANDSHAKE_RATE``; the probe opens more
handshakes than the burst. When the target refuses the same handshake the baseline
opened, the probe takes it for the throttle, slows down and retries, so no check ends in
a WARN caused by the probe's own pace.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.conf import settings

from secure_ws.codes import Reason
from secure_ws.probe import ProbeConfig, Verdict, run_probe, select_checks

pytestmark = pytest.mark.e2e


def test_the_probe_paces_itself_under_the_handshake_throttle(
    daphne_server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    server = daphne_server(
        env={
            "SECURE_WS_HANDSHAKE_RATE": "60",  # the shipped default (burst 20)
            "SECURE_WS_KEY_PREFIX": f"swt-pace-{uuid.uuid4().hex}",
        }
    )
    config = ProbeConfig(
        url=f"{server.ws_url}/ws/files/",
        token=token_for(demo_users["alice"]),
        origin=server.origin,
        ticket_url=f"{server.http_url}/api/ws-ticket/",
        signing_key=settings.SIMPLE_JWT["SIGNING_KEY"],
        max_rate=200,
        wait=2,
    )
    checks = select_checks([], ["limits", "transport"])  # every handshake-heavy check
    results = run_probe(config, checks).results
    assert len(results) > 25  # more handshakes than the burst of 20
    not_passed = {r.check_id: r.evidence for r in results if r.verdict is not Verdict.PASS}
    assert not_passed == {}
    # The target did throttle the probe: the pacing was needed, not idle.
    assert f"reason={Reason.HANDSHAKE_RATE_LIMITED.value}" in server.log()
