"""The buffered audit writer: exact accounting, batching, aggregation, outages, no secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.models import Sum
from django.test import override_settings

from secure_ws.audit.models import OUTCOME_UNRECORDED, ConnectionRecord, SecurityEvent
from secure_ws.audit.writer import AuditWriter
from secure_ws.codes import AuthMethod, Reason
from secure_ws.connection import ConnectionInfo

pytestmark = pytest.mark.django_db

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.SIGNATURE-SECRET"


def audit_settings(**overrides: Any) -> Any:
    from django.conf import settings

    return override_settings(SECURE_WS={**settings.SECURE_WS, **overrides})


@pytest.fixture
def writer() -> Iterator[AuditWriter]:
    with audit_settings(AUDIT_AGGREGATE_THRESHOLD=5, AUDIT_BATCH_SIZE=4):
        yield AuditWriter(autostart=False)


def info(ip: str = "203.0.113.9", **kwargs: Any) -> ConnectionInfo:
    return ConnectionInfo(
        client_ip=ip,
        path=f"/ws/files/?token={SECRET}",
        origin="https://app.example",
        user_agent="pytest-agent/" + "x" * 400,
        token_jti="jti-" + SECRET,
        **kwargs,
    )


def accounted() -> int:
    return int(ConnectionRecord.objects.aggregate(total=Sum("count"))["total"] or 0)


def assert_no_secret_anywhere() -> None:
    for model in (ConnectionRecord, SecurityEvent):
        for row in model.objects.values():
            text = json.dumps(row, default=str)
            assert "SIGNATURE-SECRET" not in text
            assert "token=" not in text


def test_scripted_mix_of_attempts_is_accounted_exactly(writer: AuditWriter) -> None:
    attempts = 0
    # Accepted connections: some close in the open's batch, some in a later one.
    live = [info(ip=f"198.51.100.{i}", auth_method=AuthMethod.SUBPROTOCOL) for i in range(3)]
    for conn in live:
        writer.connection_opened(conn)
        attempts += 1
    writer.connection_closed(live[0], 1000)
    writer.flush()
    writer.connection_closed(live[1], 4403)
    # One refusal of every kind.
    for reason in Reason:
        writer.connection_refused(info(ip="192.0.2.1"), reason)
        attempts += 1
    # A flood from one address: past the threshold it is aggregated, still counted.
    for _ in range(137):
        writer.connection_refused(info(ip="192.0.2.66"), Reason.ORIGIN_REFUSED)
        attempts += 1
    assert writer.flush()

    assert accounted() == attempts
    flood = ConnectionRecord.objects.filter(client_ip="192.0.2.66")
    assert flood.filter(aggregated=False).count() == 5
    assert flood.get(aggregated=True).count == 132
    # The flood cost 6 rows, not 137.
    assert ConnectionRecord.objects.count() == 3 + len(Reason) + 6
    assert_no_secret_anywhere()


def test_close_updates_the_open_in_the_same_or_a_later_batch(writer: AuditWriter) -> None:
    same, later = info(), info()
    writer.connection_opened(same)
    same.messages_in, same.bytes_in, same.violations = 3, 120, 1
    writer.connection_closed(same, 1000)
    writer.connection_opened(later)
    writer.flush()
    assert ConnectionRecord.objects.get(connection_id=later.connection_id).is_live
    later.messages_out = 7
    writer.connection_closed(later, 4403)
    writer.flush()

    first = ConnectionRecord.objects.get(connection_id=same.connection_id)
    assert (first.close_code, first.messages_in, first.bytes_in, first.violations) == (
        1000,
        3,
        120,
        1,
    )
    assert first.duration is not None
    assert first.closed_at is not None
    second = ConnectionRecord.objects.get(connection_id=later.connection_id)
    assert (second.close_code, second.messages_out, second.is_live) == (4403, 7, False)
    assert ConnectionRecord.objects.count() == 2


def test_batches_are_bounded_by_the_batch_size(writer: AuditWriter) -> None:
    with mock.patch.object(
        ConnectionRecord.objects, "bulk_create", wraps=ConnectionRecord.objects.bulk_create
    ) as bulk:
        for _ in range(10):
            writer.connection_opened(info())
        writer.flush()
    assert [len(list(c.args[0])) for c in bulk.call_args_list] == [4, 4, 2]
    assert ConnectionRecord.objects.count() == 10


def test_security_events_are_linked_to_their_connection(writer: AuditWriter) -> None:
    conn = info()
    writer.connection_opened(conn)
    writer.flush()
    writer.security_event(conn, "invalid_json", "frame is not JSON")
    writer.security_event(conn, "rate_limited", "message rate")
    writer.flush()
    record = ConnectionRecord.objects.get(connection_id=conn.connection_id)
    assert list(record.security_events.values_list("kind", flat=True)) == [
        "invalid_json",
        "rate_limited",
    ]


def test_database_outage_loses_nothing_and_writes_when_it_returns(writer: AuditWriter) -> None:
    conns = [info() for _ in range(6)]
    failing = OperationalError("connection refused")
    with mock.patch.object(ConnectionRecord.objects, "bulk_create", side_effect=failing):
        for conn in conns:
            writer.connection_opened(conn)
        for conn in conns[:3]:
            writer.connection_closed(conn, 1000)
        for _ in range(9):
            writer.connection_refused(info(ip="192.0.2.7"), Reason.CREDENTIALS_INVALID)
        assert writer.flush() is False
        assert writer.depth == 6 + 3 + 5
    assert ConnectionRecord.objects.count() == 0

    assert writer.flush() is True
    assert writer.depth == 0
    assert accounted() == 6 + 9
    assert ConnectionRecord.objects.filter(closed_at__isnull=False, outcome="accepted").count() == 3


def test_past_the_bound_records_are_counted_and_the_count_reaches_the_database() -> None:
    with audit_settings(AUDIT_BUFFER_SIZE=5, AUDIT_BATCH_SIZE=2, AUDIT_AGGREGATE_THRESHOLD=100):
        writer = AuditWriter(autostart=False)
        conns = [info() for _ in range(8)]
        with mock.patch.object(
            ConnectionRecord.objects, "bulk_create", side_effect=OperationalError("down")
        ):
            for conn in conns:
                writer.connection_opened(conn)
            for conn in conns:
                writer.connection_closed(conn, 1000)
            assert writer.flush() is False
        assert writer.flush() is True

    assert accounted() == 8
    lost = ConnectionRecord.objects.get(outcome=OUTCOME_UNRECORDED)
    assert lost.count == 3
    # Closes that found no room (5) or whose open was lost (3) are counted too.
    assert lost.violations == 8
    assert ConnectionRecord.objects.filter(outcome="accepted").count() == 5


def test_every_record_is_one_json_line_on_the_audit_logger(
    writer: AuditWriter, caplog: pytest.LogCaptureFixture
) -> None:
    conn = info()
    with caplog.at_level(logging.INFO, logger="secure_ws.audit"):
        writer.connection_opened(conn)
        writer.security_event(conn, "too_large", "frame over limit")
        writer.connection_closed(conn, 1009)
        writer.connection_refused(info(), Reason.ORIGIN_REFUSED)
        assert not [r for r in caplog.records if r.name == "secure_ws.audit"]  # not on the loop
        assert writer.flush()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "secure_ws.audit"]
    assert [line["event"] for line in lines] == ["accepted", "security_event", "closed", "refused"]
    assert all("SIGNATURE-SECRET" not in json.dumps(line) for line in lines)


def test_background_flusher_writes_without_an_explicit_flush(transactional_db: None) -> None:
    import time

    with audit_settings(AUDIT_FLUSH_INTERVAL=0.05):
        writer = AuditWriter()
        conn = info()
        writer.connection_opened(conn)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ConnectionRecord.objects.filter(connection_id=conn.connection_id).exists():
                break
            time.sleep(0.05)
        writer.stop()
    assert ConnectionRecord.objects.filter(connection_id=conn.connection_id).exists()


def test_a_deleted_user_does_not_block_the_buffer(writer: AuditWriter) -> None:
    gone = info(user_id=987654, username="deleted-user")
    writer.connection_opened(gone)
    assert writer.flush() is True
    row = ConnectionRecord.objects.get(connection_id=gone.connection_id)
    assert (row.user_id, row.username) == (None, "deleted-user")


def test_a_record_the_database_refuses_is_counted_and_the_rest_written(
    writer: AuditWriter,
) -> None:
    from django.db import IntegrityError

    real_bulk_create = ConnectionRecord.objects.bulk_create

    def refuse_poison(rows: Any, *args: Any, **kwargs: Any) -> Any:
        rows = list(rows)
        if any(row.connection_id == "poison" for row in rows):
            raise IntegrityError("refused")
        return real_bulk_create(rows, *args, **kwargs)

    poison = info()
    poison.connection_id = "poison"
    good = [info() for _ in range(3)]
    with mock.patch.object(ConnectionRecord.objects, "bulk_create", side_effect=refuse_poison):
        writer.connection_opened(good[0])
        writer.connection_opened(poison)
        for conn in good[1:]:
            writer.connection_opened(conn)
        assert writer.flush() is True
    assert writer.depth == 0
    assert ConnectionRecord.objects.filter(outcome="accepted").count() == 3
    assert accounted() == 4
    assert ConnectionRecord.objects.get(outcome=OUTCOME_UNRECORDED).count == 1
