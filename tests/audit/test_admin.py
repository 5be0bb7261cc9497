"""The audit admin through Django's test client: list, filters, search, CSV, disconnect, rights."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from secure_ws.audit.admin import ADMIN_DISCONNECT_KIND, ConnectionRecordAdmin
from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.audit.records import PendingRecord
from secure_ws.audit.storage import write_batch
from secure_ws.sessions.pubsub import channel_name
from secure_ws.sessions.registry import SessionMessage

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:secure_ws_connectionrecord_changelist"
DASHBOARD = "admin:secure_ws_connectionrecord_dashboard"


def record(**fields: Any) -> ConnectionRecord:
    defaults: dict[str, Any] = {
        "connection_id": f"c{ConnectionRecord.objects.count()}-{id(fields)}",
        "outcome": "accepted",
        "opened_at": timezone.now() - timedelta(minutes=5),
        "client_ip": "198.51.100.1",
        "origin": "https://app.example",
        "auth_method": "subprotocol",
    }
    return ConnectionRecord.objects.create(**{**defaults, **fields})


@pytest.fixture
def users(django_user_model: Any) -> dict[str, Any]:
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(
            codename="view_connectionrecord", content_type__app_label="secure_ws"
        )
    )
    nobody = django_user_model.objects.create_user("nobody", password="pw-nobody-1", is_staff=True)
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    return {"root": superuser, "viewer": viewer, "nobody": nobody, "alice": alice}


@pytest.fixture
def rows(users: dict[str, Any]) -> dict[str, ConnectionRecord]:
    now = timezone.now()
    return {
        "live": record(
            connection_id="live-1",
            user=users["alice"],
            username="alice",
            channel_name="",
        ),
        "closed": record(
            connection_id="closed-1",
            user=users["alice"],
            username="alice",
            closed_at=now,
            duration=42.5,
            close_code=1000,
            messages_in=9,
        ),
        "refused": record(
            connection_id="refused-1",
            outcome="refused",
            reason="origin_refused",
            client_ip="203.0.113.66",
            origin='=HYPERLINK("https://evil.example")',
            auth_method="none",
            closed_at=now,
        ),
        "flood": record(
            connection_id="agg-1",
            outcome="refused",
            reason="credentials_invalid",
            client_ip="203.0.113.66",
            auth_method="none",
            origin="",
            aggregated=True,
            count=412,
            closed_at=now,
        ),
    }


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client, **params: str) -> set[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {row.connection_id for row in response.context["cl"].result_list}


def test_list_shows_every_attempt(users: dict[str, Any], rows: dict[str, Any]) -> None:
    client = client_for(users["root"])
    assert listed(client) == {"live-1", "closed-1", "refused-1", "agg-1"}
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "412" in page
    assert "Dashboard" in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"outcome__exact": "refused"}, {"refused-1", "agg-1"}),
        ({"reason__exact": "origin_refused"}, {"refused-1"}),
        ({"auth_method__exact": "subprotocol"}, {"live-1", "closed-1"}),
        ({"live": "yes"}, {"live-1"}),
        ({"live": "no"}, {"closed-1", "refused-1", "agg-1"}),
        ({"origin": "https://app.example"}, {"live-1", "closed-1"}),
    ],
)
def test_filters_narrow_the_list(
    users: dict[str, Any], rows: dict[str, Any], params: dict[str, str], expected: set[str]
) -> None:
    assert listed(client_for(users["root"]), **params) == expected


def test_user_filter(users: dict[str, Any], rows: dict[str, Any]) -> None:
    client = client_for(users["root"])
    assert listed(client, user__id__exact=str(users["alice"].pk)) == {"live-1", "closed-1"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice", {"live-1", "closed-1"}),
        ("203.0.113.66", {"refused-1", "agg-1"}),
        ("evil.example", {"refused-1"}),
        ("closed-1", {"closed-1"}),
    ],
)
def test_search_by_username_ip_origin_and_connection_id(
    users: dict[str, Any], rows: dict[str, Any], query: str, expected: set[str]
) -> None:
    assert listed(client_for(users["root"]), q=query) == expected


def test_counts_are_sortable(users: dict[str, Any], rows: dict[str, Any]) -> None:
    client = client_for(users["root"])
    columns = ConnectionRecordAdmin.list_display
    count = columns.index("status") + 1  # "o" counts columns from 1
    response = client.get(reverse(CHANGELIST), {"o": f"-{count}"})  # count, descending
    assert response.context["cl"].result_list[0].connection_id == "agg-1"


def test_csv_export_has_every_selected_row_and_defuses_formulas(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    response = client_for(users["viewer"]).post(
        reverse(CHANGELIST),
        {"action": "export_csv", "_selected_action": [r.pk for r in rows.values()]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    table = list(csv.DictReader(io.StringIO(body)))
    assert {r["connection_id"] for r in table} == {"live-1", "closed-1", "refused-1", "agg-1"}
    assert sum(int(r["count"]) for r in table) == 415
    refused = next(r for r in table if r["connection_id"] == "refused-1")
    assert refused["origin"].startswith("'=")


def test_disconnect_kicks_the_live_connection_and_records_who(
    users: dict[str, Any], rows: dict[str, Any], redis_client: Any
) -> None:
    live = rows["live"]
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_name())
    try:
        response = client_for(users["root"]).post(
            reverse(CHANGELIST),
            {"action": "disconnect", "_selected_action": [live.pk, rows["closed"].pk]},
            follow=True,
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 5
        published = []
        while time.monotonic() < deadline and not published:
            message = pubsub.get_message(timeout=0.2)
            if message is not None:
                published.append(SessionMessage.decode(message["data"]))
    finally:
        pubsub.close()
    # By connection id: whichever process holds it closes it (no channel name needed).
    assert published == [SessionMessage("connection", live.connection_id, "revoked")]
    event = SecurityEvent.objects.get(record=live, kind=ADMIN_DISCONNECT_KIND)
    assert f"root (id {users['root'].pk})" in event.detail
    assert not SecurityEvent.objects.filter(record=rows["closed"]).exists()


def test_long_values_are_cut_in_the_list_with_the_full_value_on_hover(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    origin = "https://" + "very-long-subdomain." * 8 + "example"
    record(connection_id="long-1", origin=origin, username="u" * 100, client_ip="2001:db8::1")
    page = client_for(users["root"]).get(reverse(CHANGELIST)).content.decode()
    assert f'<span title="{origin}">{origin[:19]}\u2026</span>' in page
    assert f'<span title="{"u" * 100}">{"u" * 11}\u2026</span>' in page
    assert '<span title="2001:db8::1">2001:db8::1</span>' in page  # short: shown whole
    assert "refused \u00d7412" in page  # an aggregate row's attempts


def test_disconnect_marks_the_row_closed_at_once_and_the_close_record_still_lands(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    live, closed = rows["live"], rows["closed"]
    client_for(users["root"]).post(
        reverse(CHANGELIST),
        {"action": "disconnect", "_selected_action": [live.pk, closed.pk]},
    )
    # No process has written the close yet: the list shows the row closed anyway.
    live.refresh_from_db()
    assert not live.is_live
    assert (live.close_code, live.reason) == (4403, "revoked")
    before = (closed.closed_at, closed.close_code, closed.duration)
    closed.refresh_from_db()
    assert (closed.closed_at, closed.close_code, closed.duration) == before  # left alone

    # The holding process's close record arrives later and wins with its exact values.
    opened = live.opened_at.timestamp()
    write_batch(
        [
            PendingRecord(
                "close",
                opened + 60,
                {
                    "connection_id": live.connection_id,
                    "opened_at": opened,
                    "close_code": 4403,
                    "messages_in": 3,
                    "messages_out": 4,
                    "bytes_in": 30,
                    "bytes_out": 40,
                    "violations": 0,
                    "channel_name": "",
                    "reason": "revoked",
                },
            )
        ]
    )
    live.refresh_from_db()
    assert (live.duration, live.messages_out, live.close_code) == (60, 4, 4403)
    assert ConnectionRecord.objects.filter(connection_id=live.connection_id).count() == 1


def test_viewer_cannot_disconnect_delete_add_or_change(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    client = client_for(users["viewer"])
    response = client.get(reverse(CHANGELIST))
    actions = [choice[0] for choice in response.context["action_form"].fields["action"].choices]
    assert "export_csv" in actions
    assert "disconnect" not in actions
    assert "delete_selected" not in actions
    client.post(
        reverse(CHANGELIST), {"action": "disconnect", "_selected_action": [rows["live"].pk]}
    )
    assert not SecurityEvent.objects.exists()
    assert client.get(reverse("admin:secure_ws_connectionrecord_add")).status_code == 403
    change = reverse("admin:secure_ws_connectionrecord_change", args=[rows["live"].pk])
    assert client.get(change).status_code == 200  # view-only
    assert client.post(change, {"username": "mallory"}).status_code == 403
    delete = reverse("admin:secure_ws_connectionrecord_delete", args=[rows["live"].pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ConnectionRecord.objects.filter(pk=rows["live"].pk, username="alice").exists()


def test_only_superusers_delete(users: dict[str, Any], rows: dict[str, Any]) -> None:
    delete = reverse("admin:secure_ws_connectionrecord_delete", args=[rows["closed"].pk])
    assert client_for(users["root"]).post(delete, {"post": "yes"}).status_code == 302
    assert not ConnectionRecord.objects.filter(pk=rows["closed"].pk).exists()


def test_staff_without_permission_and_anonymous_are_kept_out(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    assert client_for(users["nobody"]).get(reverse(CHANGELIST)).status_code == 403
    assert client_for(users["nobody"]).get(reverse(DASHBOARD)).status_code == 403
    assert Client().get(reverse(DASHBOARD)).status_code == 302
    assert client_for(users["alice"]).get(reverse(CHANGELIST)).status_code == 302


def test_detail_page_shows_security_events_inline(
    users: dict[str, Any], rows: dict[str, Any]
) -> None:
    SecurityEvent.objects.create(
        record=rows["closed"],
        kind="invalid_json",
        detail="frame is not JSON",
        created_at=timezone.now(),
    )
    change = reverse("admin:secure_ws_connectionrecord_change", args=[rows["closed"].pk])
    page = client_for(users["viewer"]).get(change).content.decode()
    assert "invalid_json" in page
    assert "frame is not JSON" in page


def test_dashboard_counts_attempts_not_rows(users: dict[str, Any], rows: dict[str, Any]) -> None:
    response = client_for(users["viewer"]).get(reverse(DASHBOARD))
    assert response.status_code == 200
    board = response.context["board"]
    assert (board.live, board.accepted, board.refused) == (1, 2, 413)
    assert board.top_ips[0] == {"client_ip": "203.0.113.66", "n": 413}
    page = response.content.decode()
    chart = page[page.index('class="sws-chart"') :]
    assert "<rect" in chart
    # No JS framework, no CDN: the only scripts are the admin's own static files.
    assert re.findall(r'<script[^>]*src="(?!/static/)', page) == []
