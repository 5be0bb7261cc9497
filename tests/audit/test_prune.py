"""``prune_ws_audit`` deletes old rows (and their events) in batches, keeps the rest."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.sessions.models import RevokedSession

pytestmark = pytest.mark.django_db


def make(days_old: float, n: int = 1) -> None:
    for i in range(n):
        record = ConnectionRecord.objects.create(
            connection_id=f"{days_old}-{i}",
            outcome="accepted",
            opened_at=timezone.now() - timedelta(days=days_old),
        )
        SecurityEvent.objects.create(
            record=record, kind="invalid_json", created_at=record.opened_at
        )


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_ws_audit", *args, stdout=out)
    return out.getvalue()


def test_older_than_deletes_in_batches_and_keeps_recent_rows() -> None:
    make(100, 7)
    make(10, 2)
    assert "deleted 7 connection records" in run("--older-than", "90d", "--batch-size", "3")
    assert ConnectionRecord.objects.count() == 2
    assert SecurityEvent.objects.count() == 2


def test_default_age_is_the_retention_setting() -> None:
    from django.conf import settings

    make(10, 1)
    make(3, 1)
    with override_settings(SECURE_WS={**settings.SECURE_WS, "RETENTION_DAYS": 7}):
        run()
    assert list(ConnectionRecord.objects.values_list("connection_id", flat=True)) == ["3-0"]


def test_dry_run_deletes_nothing() -> None:
    make(100, 2)
    assert "would delete 2" in run("--older-than", "90d", "--dry-run")
    assert ConnectionRecord.objects.count() == 2


def test_expired_revoked_sessions_are_pruned() -> None:
    RevokedSession.objects.create(session_id="old", expires_at=timezone.now() - timedelta(hours=1))
    RevokedSession.objects.create(session_id="new", expires_at=timezone.now() + timedelta(hours=1))
    run("--older-than", "1d")
    assert list(RevokedSession.objects.values_list("session_id", flat=True)) == ["new"]


@pytest.mark.parametrize("age", ["0d", "abc", "-5d", "90x"])
def test_bad_age_is_a_clear_error(age: str) -> None:
    with pytest.raises(CommandError, match="positive age"):
        run(f"--older-than={age}")
