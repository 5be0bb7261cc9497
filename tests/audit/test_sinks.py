"""Which sinks an audit call reaches (``AUDIT_SINKS``, ``AUDIT_ENABLED``), and when."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from secure_ws.audit.models import ConnectionRecord
from secure_ws.audit.sink import NullAuditSink, get_audit_sink
from secure_ws.audit.sinks import active_sinks
from secure_ws.audit.writer import AuditWriter
from secure_ws.codes import Reason
from secure_ws.connection import ConnectionInfo
from tests.audit.test_writer import audit_settings

pytestmark = pytest.mark.django_db


def accepted_total() -> float:
    return REGISTRY.get_sample_value("secure_ws_connections_accepted_total") or 0.0


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "secure_ws.audit"]


def run_one_connection(writer: AuditWriter) -> ConnectionInfo:
    info = ConnectionInfo(client_ip="192.0.2.40")
    writer.connection_opened(info)
    writer.connection_closed(info, 1000)
    writer.connection_refused(ConnectionInfo(client_ip="192.0.2.41"), Reason.ORIGIN_REFUSED)
    return info


def test_an_audit_call_only_appends_the_sinks_run_at_the_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = AuditWriter(autostart=False)
    before = accepted_total()
    with caplog.at_level(logging.INFO, logger="secure_ws.audit"):
        info = run_one_connection(writer)
        assert (audit_lines(caplog), accepted_total(), writer.depth) == ([], before, 3)
        assert writer.flush() is True
    assert len(audit_lines(caplog)) == 3
    assert accepted_total() == before + 1
    assert ConnectionRecord.objects.filter(connection_id=info.connection_id).exists()


def test_audit_disabled_keeps_the_metrics_and_drops_the_trail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with audit_settings(AUDIT_ENABLED=False):
        assert active_sinks() == ("metrics",)
        sink = get_audit_sink()
        assert isinstance(sink, AuditWriter)
        writer = AuditWriter(autostart=False)
        before = accepted_total()
        with caplog.at_level(logging.INFO, logger="secure_ws.audit"):
            run_one_connection(writer)
            assert writer.flush() is True
    assert accepted_total() == before + 1
    assert audit_lines(caplog) == []
    assert ConnectionRecord.objects.count() == 0
    assert writer.depth == 0


@pytest.mark.parametrize(
    ("sinks", "lines", "rows", "metrics"),
    [
        (["log", "metrics"], 3, 0, 1),
        (["database"], 0, 2, 0),
        (["log"], 3, 0, 0),
    ],
)
def test_audit_sinks_chooses_where_records_go(
    sinks: list[str], lines: int, rows: int, metrics: int, caplog: pytest.LogCaptureFixture
) -> None:
    with audit_settings(AUDIT_SINKS=sinks):
        writer = AuditWriter(autostart=False)
        before = accepted_total()
        with caplog.at_level(logging.INFO, logger="secure_ws.audit"):
            run_one_connection(writer)
            assert writer.flush() is True
    assert len(audit_lines(caplog)) == lines
    assert ConnectionRecord.objects.count() == rows
    assert accepted_total() == before + metrics


def test_no_sink_at_all_is_the_null_sink() -> None:
    with audit_settings(AUDIT_SINKS=[]):
        assert isinstance(get_audit_sink(), NullAuditSink)


def test_stop_writes_what_is_buffered() -> None:
    writer = AuditWriter(autostart=False)
    info = run_one_connection(writer)
    assert writer.stop() is True
    assert writer.depth == 0
    row = ConnectionRecord.objects.get(connection_id=info.connection_id)
    assert row.close_code == 1000


def test_flush_gives_up_after_its_timeout_while_another_flush_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from django.db import connections

    from secure_ws.audit import database

    writer = AuditWriter(autostart=False, sinks=["database"])
    entered, release = threading.Event(), threading.Event()

    def slow_write(batch: Any) -> None:
        entered.set()
        release.wait(10)

    monkeypatch.setattr(database, "write_batch", slow_write)
    run_one_connection(writer)

    def flush_in_a_thread() -> None:
        try:
            writer.flush()
        finally:
            connections.close_all()  # this thread's connection, or the test DB stays in use

    worker = threading.Thread(target=flush_in_a_thread)
    worker.start()
    try:
        assert entered.wait(10)
        assert writer.flush(timeout=0.05) is False
    finally:
        release.set()
        worker.join(10)


def test_unknown_sink_names_are_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from secure_ws.conf import build_settings

    with pytest.raises(ImproperlyConfigured, match="AUDIT_SINKS"):
        build_settings({"AUDIT_SINKS": ["database", "kafka"]})
