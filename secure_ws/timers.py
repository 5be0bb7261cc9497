"""The timers of one open connection: credential expiry and idle timeout.

An open WebSocket outlives the access token (or Django session) that opened it, so the
connection keeps its own clock: ``auth.expiring`` shortly before the credential's expiry,
close 4401 at it (``auth.refresh`` restarts the timer; a connection whose credential has no
expiry ends at ``MAX_CONNECTION_AGE`` instead), and close 4408 after ``IDLE_TIMEOUT`` seconds
without a client message. :class:`ConnectionTimers` owns these background tasks so that a
close cancels all of them and the consumer's cleanup waits for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from secure_ws.codes import CloseCode, Reason

#: Closes the connection with a code and a reason (the consumer's ``close_with``).
Closer = Callable[[CloseCode, Reason], Awaitable[None]]


class ConnectionTimers:
    """The background tasks that end a connection when its token or its activity runs out.

    Args:
        close: closes the connection; called from a timer task.
        warn: sends ``auth.expiring`` with the seconds left.
        failed: reports a timer that raised (called inside ``except``); the connection
            stays open, because a broken timer must not look like an attack.
    """

    def __init__(
        self,
        *,
        close: Closer,
        warn: Callable[[float], Awaitable[None]],
        failed: Callable[[str], None],
    ) -> None:
        self._close = close
        self._warn = warn
        self._failed = failed
        self._tasks: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.Task[None] | None = None

    def watch_expiry(
        self, exp: float, warning: float, reason: Reason = Reason.TOKEN_EXPIRED
    ) -> None:
        """(Re)start the expiry timer: warn ``warning`` seconds before ``exp``, close at ``exp``.

        The close is 4401 with ``reason`` (``token_expired``, ``session_expired`` or
        ``connection_too_old``). ``warning`` of 0 closes without a warning. A timer already
        running is replaced, which is how ``auth.refresh`` moves the connection's expiry.
        """
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = self._spawn(self._expire(exp, warning, reason))

    def watch_idle(self, idle_seconds: float, last_activity: Callable[[], float]) -> None:
        """Close 4408 once ``last_activity()`` (a ``time.monotonic()`` value) is too old."""
        self._spawn(self._idle(idle_seconds, last_activity))

    def cancel(self) -> None:
        """Cancel every timer except the running task (a timer may be the one closing)."""
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def stop(self) -> None:
        """Cancel every timer and wait until they have all ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _expire(self, exp: float, warning: float, reason: Reason) -> None:
        try:
            if warning > 0 and exp - time.time() > warning:
                await asyncio.sleep(exp - time.time() - warning)
            remaining = exp - time.time()
            if warning > 0 and remaining > 0:
                await self._warn(round(remaining, 3))
            await asyncio.sleep(max(0.0, exp - time.time()))
            await self._close(CloseCode.UNAUTHORIZED, reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failed("token expiry timer")

    async def _idle(self, idle_seconds: float, last_activity: Callable[[], float]) -> None:
        try:
            while True:
                remaining = last_activity() + idle_seconds - time.monotonic()
                if remaining <= 0:
                    await self._close(CloseCode.IDLE_TIMEOUT, Reason.IDLE_TIMEOUT)
                    return
                await asyncio.sleep(remaining)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failed("idle timer")
