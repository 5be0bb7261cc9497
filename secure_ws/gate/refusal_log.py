"""A bound on refusal log lines: a flood of refused handshakes must not flood the log.

Every refused handshake is still audited one by one (the audit writer counts each, exactly);
only the human-readable ``connection refused`` warning is limited. Per reason code, the
first ``REFUSAL_LOG_LINES`` refusals of each ``REFUSAL_LOG_INTERVAL`` are logged; the rest
are counted and reported in one summary line when the interval ends::

    ... and 4812 more connection refusals with reason=handshake_rate_limited in the last 10 s

Memory is bounded by the number of reason codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


@dataclass(frozen=True)
class Suppressed:
    """How many refusals with ``reason`` went unlogged in a window of ``seconds``."""

    reason: str
    count: int
    seconds: float


@dataclass(frozen=True)
class Admission:
    """What to do with one refusal's log line.

    Attributes:
        log: write its line.
        ended: summaries of windows that ended, to log first.
        summary_due_in: set on a window's first suppressed refusal: seconds until the
            window ends and its summary should be logged, even if no refusal follows.
    """

    log: bool
    ended: list[Suppressed]
    summary_due_in: float | None = None


class RefusalLogLimiter:
    """Decide which refusals get a log line; count the others per reason and interval.

    Args:
        clock: monotonic time source (tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def admit(self, reason: str, lines: int, interval: float) -> Admission:
        """Count one refusal for ``reason``; say whether to log it and what to report."""
        now = self._clock()
        with self._lock:
            ended = self._take_ended_locked(now, interval)
            window = self._windows.get(reason)
            if window is None:
                window = self._windows[reason] = _Window(started=now)
            if window.logged < lines:
                window.logged += 1
                return Admission(True, ended)
            window.suppressed += 1
            due = window.started + interval - now if window.suppressed == 1 else None
            return Admission(False, ended, due)

    def take_ended(self, interval: float) -> list[Suppressed]:
        """Close every window that has ended; return the summaries of those that suppressed."""
        now = self._clock()
        with self._lock:
            return self._take_ended_locked(now, interval)

    def clear(self) -> None:
        """Forget every window (tests)."""
        with self._lock:
            self._windows.clear()

    def _take_ended_locked(self, now: float, interval: float) -> list[Suppressed]:
        ended = [reason for reason, w in self._windows.items() if now - w.started >= interval]
        summaries = []
        for reason in ended:
            window = self._windows.pop(reason)
            if window.suppressed:
                summaries.append(Suppressed(reason, window.suppressed, interval))
        return summaries
