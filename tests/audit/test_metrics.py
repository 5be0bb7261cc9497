"""Prometheus metrics: fed by the audit sink, served only when enabled and only to the trusted."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from secure_ws.audit.writer import AuditWriter
from secure_ws.codes import Reason
from secure_ws.connection import ConnectionInfo

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metrics_settings(**overrides: Any) -> Any:
    return override_settings(SECURE_WS={**settings.SECURE_WS, **overrides})


def test_sink_calls_feed_the_metrics() -> None:
    writer = AuditWriter(autostart=False)
    info = ConnectionInfo(client_ip="192.0.2.5")
    before = {
        "refused": sample("secure_ws_connections_refused_total", reason="origin_refused"),
        "accepted": sample("secure_ws_connections_accepted_total"),
        "live": sample("secure_ws_live_connections"),
        "violations": sample("secure_ws_violations_total", kind="invalid_json"),
        "drops": sample("secure_ws_fanout_drops_total"),
        "in": sample("secure_ws_messages_in_total"),
        "handshakes": sample("secure_ws_handshake_seconds_count"),
    }
    writer.connection_refused(info, Reason.ORIGIN_REFUSED)
    writer.connection_opened(info)
    writer.flush()
    assert sample("secure_ws_live_connections") == before["live"] + 1
    writer.security_event(info, "invalid_json", "frame is not JSON")
    writer.security_event(info, "group_over_capacity", "dropped")
    info.messages_in = 5
    writer.connection_closed(info, 1000)
    assert sample("secure_ws_connections_accepted_total") == before["accepted"] + 1
    writer.flush()

    assert sample("secure_ws_connections_refused_total", reason="origin_refused") == (
        before["refused"] + 1
    )
    assert sample("secure_ws_connections_accepted_total") == before["accepted"] + 1
    assert sample("secure_ws_live_connections") == before["live"]
    assert sample("secure_ws_violations_total", kind="invalid_json") == before["violations"] + 1
    assert sample("secure_ws_fanout_drops_total") == before["drops"] + 1
    assert sample("secure_ws_messages_in_total") == before["in"] + 5
    assert sample("secure_ws_handshake_seconds_count") == before["handshakes"] + 2
    assert sample("secure_ws_audit_buffer_depth") == writer.depth


def test_metrics_are_not_served_unless_enabled(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 404


def test_enabled_metrics_need_staff_or_the_token(admin_user: Any, django_user_model: Any) -> None:
    with metrics_settings(METRICS_ENABLED=True, METRICS_TOKEN=TOKEN):
        assert Client().get("/metrics").status_code == 403
        wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN[:-1] + "X")
        assert wrong.status_code == 403
        plain = django_user_model.objects.create_user("plain", password="pw-plain-1")
        user_client = Client()
        user_client.force_login(plain)
        assert user_client.get("/metrics").status_code == 403

        scraped = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN)
        assert scraped.status_code == 200
        assert b"secure_ws_connections_accepted_total" in scraped.content
        staff = Client()
        staff.force_login(admin_user)
        assert staff.get("/metrics").status_code == 200
