"""The deadlines of one open connection: credential expiry and idle timeout.

An open WebSocket outlives the access token (or Django session) that opened it, so the
connection keeps its own clock: ``auth.expiring`` shortly before the credential's expiry,
close 4401 at it (``auth.refresh`` moves the deadline; a connection whose credential has no
expiry ends at ``MAX_CONNECTION_AGE`` instead), and close 4408 after ``IDLE_TIMEOUT`` seconds
without a client message.

Nothing here runs while a connection waits: :class:`ConnectionTimers` keeps one timer
handle on the event loop's own heap (one per process), at the connection's earliest
deadline, and starts a task only when a deadline fires and there is something to send. An
idle connection costs that handle and a small slotted object instead of a task, its
coroutine frame and a sleeping future per timer. The idle check compares the last client
message when the deadline fires, so messages never reschedule anything; a deadline moved
later (``auth.refresh``) keeps the handle, which wakes early once and re-arms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from secure_ws.codes import CloseCode, Reason

#: Closes the connection with a code and a reason (the consumer's ``close_with``).
Closer = Callable[[CloseCode, Reason], Awaitable[None]]


class TimerHandle(Protocol):
    """What :meth:`TimerClock.call_later` returns (``asyncio.TimerHandle``)."""

    def cancel(self) -> None:
        """Stop the callback from running."""


class TimerClock(Protocol):
    """The clocks and the timer heap the connection timers use (injectable in tests)."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (token ``exp`` is one)."""

    def monotonic(self) -> float:
        """The clock of ``ConnectionTraffic.last_activity`` (``time.monotonic``)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now, on the running loop."""


class LoopClock:
    """The real clocks and the running event loop's timer heap."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


#: The clock every connection shares unless a test injects another.
LOOP_CLOCK = LoopClock()


class ConnectionTimers:
    """The deadlines that end a connection when its credential or its activity runs out.

    Args:
        close: closes the connection; run in a task started when a deadline fires.
        warn: sends ``auth.expiring`` with the seconds left; run the same way.
        failed: reports a timer that raised (called inside ``except``); the connection
            stays open, because a broken timer must not look like an attack.
        clock: the clocks and timer heap (the running loop's by default).
    """

    __slots__ = (
        "_clock",
        "_close",
        "_due",
        "_exp",
        "_failed",
        "_handle",
        "_idle",
        "_last_activity",
        "_reason",
        "_stopped",
        "_tasks",
        "_warn",
        "_warn_at",
    )

    def __init__(
        self,
        *,
        close: Closer,
        warn: Callable[[float], Awaitable[None]],
        failed: Callable[[str], None],
        clock: TimerClock = LOOP_CLOCK,
    ) -> None:
        self._close = close
        self._warn = warn
        self._failed = failed
        self._clock = clock
        self._handle: TimerHandle | None = None
        #: ``clock.monotonic()`` at which ``_handle`` fires.
        self._due = 0.0
        self._exp: float | None = None
        self._warn_at: float | None = None
        self._reason = Reason.TOKEN_EXPIRED
        self._idle: float | None = None
        self._last_activity: Callable[[], float] | None = None
        #: Warnings and closes started by a deadline and not finished yet (None: none yet).
        self._tasks: set[asyncio.Task[None]] | None = None
        self._stopped = False

    def watch_expiry(
        self, exp: float, warning: float, reason: Reason = Reason.TOKEN_EXPIRED
    ) -> None:
        """(Re)set the expiry: warn ``warning`` seconds before ``exp``, close at ``exp``.

        The close is 4401 with ``reason`` (``token_expired``, ``session_expired`` or
        ``connection_too_old``). ``warning`` of 0 closes without a warning; with less than
        ``warning`` seconds left the warning goes at once. A deadline already set is
        replaced, which is how ``auth.refresh`` moves the connection's expiry.
        """
        self._exp = exp
        self._reason = reason
        self._warn_at = exp - warning if warning > 0 else None
        self._arm()

    def watch_idle(self, idle_seconds: float, last_activity: Callable[[], float]) -> None:
        """Close 4408 once ``last_activity()`` (a ``clock.monotonic()`` value) is too old."""
        self._idle = idle_seconds
        self._last_activity = last_activity
        self._arm()

    def cancel(self) -> None:
        """End every deadline and task except the running one (it may be the one closing)."""
        self._disarm()
        current = asyncio.current_task()
        for task in list(self._tasks or ()):
            if task is not current:
                task.cancel()

    async def stop(self) -> None:
        """End every deadline and task and wait until the tasks have ended."""
        self._disarm()
        tasks = list(self._tasks or ())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ scheduling

    def _disarm(self) -> None:
        self._stopped = True
        self._exp = self._warn_at = self._idle = self._last_activity = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        """Make sure the handle fires no later than the earliest deadline."""
        if self._stopped:
            return
        delay = self._next_delay()
        if delay is None:
            return
        now = self._clock.monotonic()
        if self._handle is not None:
            if self._due <= now + delay:
                return  # it fires first, finds nothing due and re-arms: no cancelled handle
            self._handle.cancel()
        self._due = now + delay
        self._handle = self._clock.call_later(delay, self._fire)

    def _next_delay(self) -> float | None:
        delays: list[float] = []
        if self._exp is not None:
            target = self._warn_at if self._warn_at is not None else self._exp
            delays.append(target - self._clock.time())
        idle_left = self._idle_left()
        if idle_left is not None:
            delays.append(idle_left)
        return max(0.0, min(delays)) if delays else None

    def _idle_left(self) -> float | None:
        if self._idle is None or self._last_activity is None:
            return None
        try:
            return self._last_activity() + self._idle - self._clock.monotonic()
        except Exception:
            self._idle = self._last_activity = None
            self._failed("idle timer")
            return None

    def _fire(self) -> None:
        """The handle's callback: start what is due, then re-arm for what is left."""
        self._handle = None
        if self._stopped:
            return
        if self._exp is not None:
            now = self._clock.time()
            if now >= self._exp:
                self._exp = self._warn_at = None
                self._start(self._close(CloseCode.UNAUTHORIZED, self._reason), "token expiry timer")
            elif self._warn_at is not None and now >= self._warn_at:
                self._warn_at = None
                self._start(self._warn(round(self._exp - now, 3)), "token expiry timer")
        idle_left = self._idle_left()
        if idle_left is not None and idle_left <= 0:
            self._idle = self._last_activity = None
            self._start(self._close(CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT), "idle timer")
        self._arm()

    def _start(self, action: Awaitable[None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._report_failure(action, what))
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_failure(self, action: Awaitable[None], what: str) -> None:
        try:
            await action
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failed(what)
