"""How the writer turns opens and closes into as few statements as possible, losing nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.audit.writer import AuditWriter
from secure_ws.connection import ConnectionInfo
from tests.audit.test_writer import audit_settings, info

pytestmark = pytest.mark.django_db

TABLE = ConnectionRecord._meta.db_table


@pytest.fixture
def writer() -> Iterator[AuditWriter]:
    # A long flush interval: every open in these tests is "young" for the background flush.
    with audit_settings(AUDIT_BATCH_SIZE=4, AUDIT_FLUSH_INTERVAL=60.0):
        yield AuditWriter(autostart=False)


def statements(queries: CaptureQueriesContext, verb: str) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().startswith(verb)]


def open_and_close(writer: AuditWriter, conn: ConnectionInfo, **counters: Any) -> None:
    writer.connection_opened(conn)
    for name, value in counters.items():
        setattr(conn, name, value)
    writer.connection_closed(conn, 1000)


def test_background_flush_holds_a_young_open_until_its_close_makes_it_one_insert(
    writer: AuditWriter,
) -> None:
    short = info()
    writer.connection_opened(short)
    for _ in range(5):  # pushes the close into a later batch than the open
        writer.connection_opened(info())
    assert writer.flush(final=False) is True
    assert not ConnectionRecord.objects.filter(connection_id=short.connection_id).exists()
    assert writer.depth == 6

    short.messages_in, short.bytes_in = 4, 99
    writer.connection_closed(short, 1000)
    with CaptureQueriesContext(connection) as queries:
        assert writer.flush(final=False) is True
    assert statements(queries, "UPDATE") == []
    row = ConnectionRecord.objects.get(connection_id=short.connection_id)
    assert (row.close_code, row.messages_in, row.bytes_in, row.is_live) == (1000, 4, 99, False)
    # The five live ones are still waiting for their close; the final flush writes them.
    assert writer.depth == 5
    assert writer.flush() is True
    assert writer.depth == 0
    assert ConnectionRecord.objects.count() == 6
    assert ConnectionRecord.objects.filter(closed_at__isnull=True).count() == 5


def test_events_of_a_held_open_are_held_and_linked_when_written(writer: AuditWriter) -> None:
    conn = info()
    writer.connection_opened(conn)
    writer.security_event(conn, "invalid_json", "frame is not JSON")
    assert writer.flush(final=False) is True
    assert SecurityEvent.objects.count() == 0
    writer.connection_closed(conn, 4008)
    assert writer.flush(final=False) is True
    event = SecurityEvent.objects.get()
    assert event.record.connection_id == conn.connection_id
    assert event.record.close_code == 4008


def test_an_open_older_than_two_flush_intervals_is_written_by_the_background_flush() -> None:
    with audit_settings(AUDIT_FLUSH_INTERVAL=0.001):
        writer = AuditWriter(autostart=False)
        conn = info()
        writer.connection_opened(conn)
        time.sleep(0.01)  # the open is now older than two flush intervals
        assert writer.flush(final=False) is True
    assert ConnectionRecord.objects.get(connection_id=conn.connection_id).is_live


def test_closes_of_rows_written_earlier_are_one_update_without_a_select(
    writer: AuditWriter,
) -> None:
    conns = [info() for _ in range(3)]
    for conn in conns:
        writer.connection_opened(conn)
    assert writer.flush() is True
    for number, conn in enumerate(conns):
        conn.messages_out, conn.channel_name = number + 1, ""
        writer.connection_closed(conn, 1000 + number)
    with CaptureQueriesContext(connection) as queries:
        assert writer.flush() is True
    selects = [s for s in statements(queries, "SELECT") if TABLE in s]
    # PostgreSQL: UPDATE ... FROM (VALUES ...); elsewhere in_bulk + bulk_update.
    assert len(selects) == (0 if connection.vendor == "postgresql" else 1)
    assert len(statements(queries, "UPDATE")) == 1
    for number, conn in enumerate(conns):
        row = ConnectionRecord.objects.get(connection_id=conn.connection_id)
        assert (row.close_code, row.messages_out) == (1000 + number, number + 1)
        assert row.duration is not None
        assert row.closed_at is not None
    assert ConnectionRecord.objects.count() == 3


def test_an_empty_channel_name_at_close_keeps_the_one_recorded_at_open(
    writer: AuditWriter,
) -> None:
    conn = info(channel_name="specific.abc!def")
    writer.connection_opened(conn)
    assert writer.flush() is True
    conn.channel_name = ""
    writer.connection_closed(conn, 1000)
    assert writer.flush() is True
    row = ConnectionRecord.objects.get(connection_id=conn.connection_id)
    assert (row.channel_name, row.close_code) == ("specific.abc!def", 1000)


def test_a_close_whose_open_row_does_not_exist_becomes_its_own_row(writer: AuditWriter) -> None:
    orphan = info()
    orphan.messages_in = 2
    writer.connection_closed(orphan, 1001)
    assert writer.flush() is True
    row = ConnectionRecord.objects.get(connection_id=orphan.connection_id)
    assert (row.outcome, row.close_code, row.messages_in, row.count) == ("accepted", 1001, 2, 1)


def test_an_outage_mid_flush_requeues_every_record_in_order(writer: AuditWriter) -> None:
    from unittest import mock

    from django.db import OperationalError

    conns = [info() for _ in range(6)]
    for number, conn in enumerate(conns):
        writer.connection_opened(conn)
        if number % 2:
            writer.connection_closed(conn, 1000)
    writer.security_event(conns[0], "forbidden", "not a member")
    real_bulk_create = ConnectionRecord.objects.bulk_create
    calls: list[int] = []

    def fail_second_batch(rows: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("database went away")
        return real_bulk_create(rows, *args, **kwargs)

    with mock.patch.object(ConnectionRecord.objects, "bulk_create", side_effect=fail_second_batch):
        assert writer.flush() is False
    assert writer.depth > 0
    assert writer.flush() is True
    assert writer.depth == 0
    assert ConnectionRecord.objects.count() == 6
    assert ConnectionRecord.objects.filter(close_code=1000).count() == 3
    assert SecurityEvent.objects.get().record.connection_id == conns[0].connection_id
