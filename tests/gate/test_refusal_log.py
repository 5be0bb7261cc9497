"""Refusal log lines are bounded per reason and interval; the audit still counts each one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from secure_ws.codes import Reason
from secure_ws.connection import ConnectionInfo
from secure_ws.exceptions import Refused
from secure_ws.gate import refusal
from secure_ws.gate.refusal_log import RefusalLogLimiter, Suppressed
from tests.gate.conftest import set_gate

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_logs_a_bounded_number_per_reason_and_counts_the_rest() -> None:
    clock = FakeClock()
    limiter = RefusalLogLimiter(clock)
    logged = [limiter.admit("origin_refused", 3, 10.0).log for _ in range(50)]
    assert logged == [True] * 3 + [False] * 47
    # Another reason has its own budget.
    assert limiter.admit("token_expired", 3, 10.0).log is True
    clock.now += 10.0
    admission = limiter.admit("origin_refused", 3, 10.0)
    assert admission.log is True  # a new window
    assert admission.ended == [Suppressed("origin_refused", 47, 10.0)]


def test_only_the_first_suppressed_refusal_asks_for_a_summary_timer() -> None:
    clock = FakeClock()
    limiter = RefusalLogLimiter(clock)
    limiter.admit("x", 1, 10.0)
    clock.now += 4.0
    first = limiter.admit("x", 1, 10.0)
    assert first.summary_due_in == pytest.approx(6.0)
    assert limiter.admit("x", 1, 10.0).summary_due_in is None


def test_windows_that_end_quietly_are_reported_once() -> None:
    clock = FakeClock()
    limiter = RefusalLogLimiter(clock)
    for _ in range(5):
        limiter.admit("x", 2, 10.0)
    assert limiter.take_ended(10.0) == []  # not over yet
    clock.now += 11.0
    assert limiter.take_ended(10.0) == [Suppressed("x", 3, 10.0)]
    assert limiter.take_ended(10.0) == []


class CountingSink:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def connection_refused(self, info: ConnectionInfo, reason: Reason) -> None:
        self.refused.append(reason.value)


async def test_a_refusal_flood_logs_bounded_lines_and_audits_every_attempt(
    settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_gate(settings, REFUSAL_LOG_LINES=5, REFUSAL_LOG_INTERVAL=60.0)
    sink = CountingSink()
    monkeypatch.setattr(refusal, "get_audit_sink", lambda: sink)
    with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
        for _ in range(200):
            scope = {"type": "websocket", "path": "/ws/info/"}
            await refusal.record_refusal(scope, Refused(Reason.ORIGIN_REFUSED, "flood"))
    lines = [r.getMessage() for r in caplog.records if r.name == "secure_ws.gate"]
    assert len(lines) == 5
    assert sink.refused == [Reason.ORIGIN_REFUSED.value] * 200


async def test_the_suppressed_count_is_logged_when_the_interval_ends(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    set_gate(settings, REFUSAL_LOG_LINES=2, REFUSAL_LOG_INTERVAL=10.0)
    clock = FakeClock()
    limiter = RefusalLogLimiter(clock)
    original = refusal.refusal_log_limiter
    refusal.refusal_log_limiter = limiter
    try:
        with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
            for _ in range(9):
                refusal.log_refusal(ConnectionInfo(), Refused(Reason.ORIGIN_REFUSED, "x"))
            clock.now += 10.0
            refusal.log_refusal(ConnectionInfo(), Refused(Reason.TOKEN_EXPIRED, "x"))
    finally:
        refusal.refusal_log_limiter = original
    text = caplog.text
    assert text.count("connection refused: reason=origin_refused") == 2
    assert "... and 7 more connection refusals with reason=origin_refused in the last 10 s" in text
    assert "connection refused: reason=token_expired" in text


def test_refusal_details_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
        refusal.log_refusal(
            ConnectionInfo(path="/ws/\nFORGED"), Refused(Reason.BAD_HANDSHAKE, "bad \r\nFAKE")
        )
    assert "\n" not in caplog.records[0].getMessage()
    assert "detail=bad \\x0d\\x0aFAKE" in caplog.text


async def test_the_count_is_logged_even_when_the_flood_stops(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    set_gate(settings, REFUSAL_LOG_LINES=1, REFUSAL_LOG_INTERVAL=0.2)
    with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
        for _ in range(4):
            refusal.log_refusal(ConnectionInfo(), Refused(Reason.ORIGIN_REFUSED, "x"))
        summary = "... and 3 more connection refusals with reason=origin_refused"
        for _ in range(200):  # the timer fires after 0.2 s; 10 s at most
            if summary in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert summary in caplog.text
