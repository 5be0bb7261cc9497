"""The batcher alone: coalescing, aggregation, bounds and loss counting, without a database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from secure_ws.audit.batcher import AuditBatcher
from secure_ws.audit.models import ConnectionRecord
from secure_ws.audit.records import (
    CLOSE_FIELDS,
    EXPORT_FIELDS,
    MAX_LENGTHS,
    OPEN_FIELDS,
    RECORD_FIELDS,
    PendingRecord,
    to_pending,
)
from secure_ws.codes import Reason
from secure_ws.connection import ConnectionInfo

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0  # a fixed minute start: the tests never depend on the wall clock


@pytest.fixture
def batcher() -> Iterator[AuditBatcher]:
    with override_settings(
        SECURE_WS={
            **settings.SECURE_WS,
            "AUDIT_BATCH_SIZE": 4,
            "AUDIT_BUFFER_SIZE": 20,
            "AUDIT_AGGREGATE_THRESHOLD": 5,
        }
    ):
        yield AuditBatcher()


def record(
    kind: Any, info: ConnectionInfo, at: float = NOW, arguments: Any = None
) -> PendingRecord:
    if kind == "close" and arguments is None:
        arguments = (1000, (0, 0, 0, 0, 0), "", 0)
    if kind == "event" and arguments is None:
        arguments = ("invalid_json", "frame is not JSON")
    return to_pending((kind, at, info, arguments))


def kinds(batches: list[list[PendingRecord]]) -> list[list[str]]:
    return [[r.kind for r in batch] for batch in batches]


def test_an_open_and_its_close_share_a_batch_across_the_batch_boundary(
    batcher: AuditBatcher,
) -> None:
    conns = [ConnectionInfo() for _ in range(4)]
    for conn in conns:
        batcher.add(record("open", conn))
    batcher.add(record("close", conns[3]))
    batches = batcher.take(final=True, young_after=NOW)
    # Four opens fill a batch, but the last one's close goes with it.
    assert kinds(batches) == [["open", "open", "open", "open", "close"]]
    assert batches[0][3].connection_id == batches[0][4].connection_id


def test_a_young_open_is_held_with_its_events_until_its_close(batcher: AuditBatcher) -> None:
    young, old = ConnectionInfo(), ConnectionInfo()
    batcher.add(record("open", old, at=NOW - 10))
    batcher.add(record("open", young, at=NOW))
    batcher.add(record("event", young))
    assert kinds(batcher.take(final=False, young_after=NOW - 2)) == [["open"]]
    batcher.written(1)
    batcher.finish()
    assert batcher.depth == 2
    batcher.add(record("close", young, at=NOW + 1))
    assert kinds(batcher.take(final=False, young_after=NOW - 2)) == [["open", "close", "event"]]


def test_a_flood_is_aggregated_and_every_attempt_counted(batcher: AuditBatcher) -> None:
    for _ in range(137):
        batcher.add(
            record("refuse", ConnectionInfo(client_ip="192.0.2.66"), arguments="origin_refused")
        )
    # The next minute starts a new bucket.
    for _ in range(7):
        batcher.add(
            record("refuse", ConnectionInfo(client_ip="192.0.2.66"), NOW + 60, "origin_refused")
        )
    assert batcher.depth == 10
    aggregates, lost = batcher.take_counters()
    assert sorted(a.count for a in aggregates.values()) == [2, 132]
    assert (lost.attempts, lost.other) == (0, 0)


def test_past_the_bound_records_are_counted_and_their_closes_too(batcher: AuditBatcher) -> None:
    conns = [ConnectionInfo() for _ in range(25)]
    for conn in conns:
        batcher.add(record("open", conn))
    for conn in conns:
        batcher.add(record("close", conn))
    assert batcher.depth == 20
    _, lost = batcher.take_counters()
    # 5 opens found no room; all 25 closes did not either (20 buffer + 5 unlinked).
    assert (lost.attempts, lost.other) == (5, 25)
    assert batcher.take_loss_report() == {"open": 5, "close": 25}
    assert batcher.take_loss_report() == {}


def test_records_in_flight_count_against_the_bound_until_written(batcher: AuditBatcher) -> None:
    for _ in range(20):
        batcher.add(record("open", ConnectionInfo()))
    batches = batcher.take(final=True, young_after=NOW)
    batcher.add(record("open", ConnectionInfo()))
    assert batcher.lost.attempts == 1
    batcher.written(len(batches[0]))
    batcher.add(record("open", ConnectionInfo()))
    assert batcher.lost.attempts == 1


def test_a_requeued_batch_comes_back_first_and_in_order(batcher: AuditBatcher) -> None:
    conns = [ConnectionInfo() for _ in range(6)]
    for conn in conns:
        batcher.add(record("open", conn))
    first, second = batcher.take(final=True, young_after=NOW)
    batcher.requeue(first + second)
    batcher.finish()
    again = [r.connection_id for batch in batcher.take(final=True, young_after=NOW) for r in batch]
    assert again == [c.connection_id for c in conns]


def test_failed_counters_are_added_back(batcher: AuditBatcher) -> None:
    for _ in range(8):
        batcher.add(
            record("refuse", ConnectionInfo(client_ip="192.0.2.7"), arguments="rate_limited")
        )
    aggregates, lost = batcher.take_counters()
    batcher.add(record("refuse", ConnectionInfo(client_ip="192.0.2.7"), arguments="rate_limited"))
    batcher.requeue_counters(aggregates, lost)
    assert [a.count for a in batcher.aggregates.values()] == [4]


def test_a_record_holds_no_query_string_and_fits_its_columns() -> None:
    info = ConnectionInfo(path="/ws/?token=SECRET", origin="https://" + "o" * 400)
    row = to_pending(("refuse", time.time(), info, Reason.ORIGIN_REFUSED.value)).fields
    assert row["path"] == "/ws/"
    assert all(len(row[name]) <= MAX_LENGTHS[name] for name in row if name in MAX_LENGTHS)


def test_one_list_of_fields_matches_the_model() -> None:
    model = ConnectionRecord._meta
    columns = [f.attname for f in model.concrete_fields if f.attname != "id"]
    assert columns == list(RECORD_FIELDS)
    for name, length in MAX_LENGTHS.items():
        assert model.get_field(name).max_length == length
    assert set(OPEN_FIELDS) | set(CLOSE_FIELDS) | set(EXPORT_FIELDS) <= set(RECORD_FIELDS)
