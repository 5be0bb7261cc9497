"""ConnectionTimers, deadline by deadline, on an injected clock (no sleeping).

The consumer-level behaviour (frames, close codes) is in tests/test_consumers.py and the
e2e suites; here the scheduler itself: when it wakes, what it starts, what it costs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from secure_ws.codes import CloseCode, Reason
from secure_ws.consumer.timers import ConnectionTimers

pytestmark = pytest.mark.unit


class FakeHandle:
    def __init__(self, due: float, callback: Callable[[], object]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Wall and monotonic clocks that move only when told, and a timer heap to match."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 500.0
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(self.mono + delay, callback)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled]

    async def advance(self, seconds: float) -> None:
        """Move both clocks, run every handle that came due, let started tasks run."""
        target = self.mono + seconds
        while True:
            due = [h for h in self.pending() if h.due <= target]
            if not due:
                break
            handle = min(due, key=lambda h: h.due)
            self.handles.remove(handle)
            self.wall += handle.due - self.mono
            self.mono = handle.due
            handle.callback()
        self.wall += target - self.mono
        self.mono = target
        for _ in range(5):
            await asyncio.sleep(0)


class Recorder:
    """The consumer side: what the timers asked for."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.failures: list[str] = []
        self.close_error: Exception | None = None
        self.warn_error: Exception | None = None

    async def close(self, code: CloseCode, reason: Reason) -> None:
        self.events.append(("close", code, reason))
        if self.close_error is not None:
            raise self.close_error

    async def warn(self, expires_in: float) -> None:
        self.events.append(("warn", expires_in))
        if self.warn_error is not None:
            raise self.warn_error

    def failed(self, where: str) -> None:
        self.failures.append(where)
        logging.getLogger("tests.timers").exception("%s failed", where)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def timers(clock: FakeClock, rec: Recorder) -> ConnectionTimers:
    return ConnectionTimers(close=rec.close, warn=rec.warn, failed=rec.failed, clock=clock)


async def test_expiry_warns_ahead_then_closes_4401_with_its_reason(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 100, 60, Reason.SESSION_EXPIRED)
    await clock.advance(39.9)
    assert rec.events == []
    await clock.advance(0.1)
    assert rec.events == [("warn", 60.0)]
    await clock.advance(59.9)
    assert rec.events == [("warn", 60.0)]
    await clock.advance(0.1)
    assert rec.events == [("warn", 60.0), ("close", CloseCode.UNAUTHORIZED, Reason.SESSION_EXPIRED)]
    assert clock.pending() == []


async def test_less_time_left_than_the_warning_warns_at_once(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 10, 60, Reason.CONNECTION_TOO_OLD)
    await clock.advance(0)
    assert rec.events == [("warn", 10.0)]
    await clock.advance(10)
    assert rec.events[-1] == ("close", CloseCode.UNAUTHORIZED, Reason.CONNECTION_TOO_OLD)


async def test_an_expiry_in_the_past_closes_at_once_without_a_warning(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall - 5, 60)
    await clock.advance(0)
    assert rec.events == [("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)]


async def test_a_zero_warning_closes_without_warning(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 30, 0)
    await clock.advance(30)
    assert rec.events == [("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)]


async def test_a_later_expiry_moves_the_deadline_without_a_cancelled_handle(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 100, 60)
    await clock.advance(50)
    assert rec.events == [("warn", 60.0)]
    timers.watch_expiry(clock.wall + 300, 60)  # auth.refresh
    assert [h.cancelled for h in clock.handles] == [False]
    await clock.advance(50)
    assert rec.events == [("warn", 60.0)]  # the old deadline woke, found nothing, re-armed
    await clock.advance(190)
    assert rec.events == [("warn", 60.0), ("warn", 60.0)]
    await clock.advance(60)
    assert rec.events[-1] == ("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)


async def test_an_earlier_expiry_replaces_the_handle(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 1000, 0)
    timers.watch_expiry(clock.wall + 10, 0)
    assert len(clock.pending()) == 1
    await clock.advance(10)
    assert rec.events == [("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)]


async def test_idle_closes_4408_after_the_timeout_without_rescheduling_per_message(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    activity = {"last": clock.mono}
    timers.watch_idle(30, lambda: activity["last"])
    for _ in range(100):  # messages only move the timestamp
        await clock.advance(0.2)
        activity["last"] = clock.mono
    assert len(clock.handles) == 1
    await clock.advance(29.9)
    assert rec.events == []
    await clock.advance(0.1)
    assert rec.events == [("close", CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT)]
    assert clock.pending() == []


async def test_one_handle_serves_expiry_and_idle_together(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    activity = {"last": clock.mono}
    timers.watch_expiry(clock.wall + 100, 60)
    timers.watch_idle(10, lambda: activity["last"])
    assert len(clock.pending()) == 1
    await clock.advance(5)
    activity["last"] = clock.mono
    await clock.advance(9.9)
    assert rec.events == []
    await clock.advance(0.1)
    assert rec.events == [("close", CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT)]
    assert len(clock.pending()) == 1  # the expiry is still armed until the close cancels it


async def test_cancel_ends_every_deadline(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    timers.watch_expiry(clock.wall + 100, 60)
    timers.watch_idle(10, lambda: clock.mono - 100)
    timers.cancel()
    assert clock.pending() == []
    timers.watch_expiry(clock.wall + 1, 0)  # a refresh racing the close changes nothing
    await clock.advance(200)
    assert rec.events == []


async def test_a_close_that_cancels_the_timers_is_not_cancelled_itself(clock: FakeClock) -> None:
    finished: list[bool] = []

    async def close(code: CloseCode, reason: Reason) -> None:
        timers.cancel()  # what close_with does
        await asyncio.sleep(0)
        finished.append(True)

    async def warn(expires_in: float) -> None:
        pass

    timers = ConnectionTimers(close=close, warn=warn, failed=lambda where: None, clock=clock)
    timers.watch_expiry(clock.wall, 0)
    await clock.advance(0)
    assert finished == [True]


async def test_stop_waits_for_a_close_in_progress(clock: FakeClock, rec: Recorder) -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def close(code: CloseCode, reason: Reason) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("close")

    timers = ConnectionTimers(close=close, warn=rec.warn, failed=rec.failed, clock=clock)
    timers.watch_expiry(clock.wall, 0)
    await clock.advance(0)
    assert started.is_set()
    await timers.stop()
    assert ended == ["close"]
    assert clock.pending() == []


async def test_a_failing_warning_is_reported_and_the_expiry_still_closes(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers, caplog: pytest.LogCaptureFixture
) -> None:
    rec.warn_error = RuntimeError("send failed")
    timers.watch_expiry(clock.wall + 100, 60)
    with caplog.at_level(logging.ERROR, logger="tests.timers"):
        await clock.advance(40)
    assert rec.failures == ["token expiry timer"]
    assert "RuntimeError: send failed" in caplog.text
    await clock.advance(60)
    assert rec.events[-1] == ("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)


async def test_a_failing_close_is_reported_and_leaves_the_connection_open(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    rec.close_error = RuntimeError("close failed")
    timers.watch_expiry(clock.wall + 5, 0)
    await clock.advance(5)
    assert rec.failures == ["token expiry timer"]
    await clock.advance(1000)
    assert rec.events == [("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)]


async def test_a_failing_activity_clock_is_reported_and_the_expiry_still_works(
    clock: FakeClock, rec: Recorder, timers: ConnectionTimers
) -> None:
    def broken() -> float:
        raise RuntimeError("activity clock broke")

    timers.watch_expiry(clock.wall + 20, 0)
    timers.watch_idle(5, broken)
    assert rec.failures == ["idle timer"]
    await clock.advance(20)
    assert rec.events == [("close", CloseCode.UNAUTHORIZED, Reason.TOKEN_EXPIRED)]


async def test_watching_starts_no_task_on_the_real_loop() -> None:
    rec = Recorder()
    timers = ConnectionTimers(close=rec.close, warn=rec.warn, failed=rec.failed)
    before = asyncio.all_tasks()
    timers.watch_expiry(time.time() + 3600, 60)
    timers.watch_idle(600, time.monotonic)
    assert asyncio.all_tasks() == before
    await timers.stop()


async def test_the_real_loop_fires_a_due_deadline() -> None:
    rec = Recorder()
    closed = asyncio.Event()

    async def close(code: CloseCode, reason: Reason) -> None:
        await rec.close(code, reason)
        closed.set()

    timers = ConnectionTimers(close=close, warn=rec.warn, failed=rec.failed)
    opened = time.monotonic()
    timers.watch_idle(0.01, lambda: opened)
    await asyncio.wait_for(closed.wait(), 5)
    assert rec.events == [("close", CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT)]
