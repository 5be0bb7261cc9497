"""The probe's global token bucket: it never floods a host by accident.

Every handshake and every message the probe sends, on any connection, takes one token,
so ``--max-rate`` bounds the probe's total load however many connections are open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """A token bucket shared by every connection of one probe run.

    Args:
        rate: tokens per second (operations per second across the whole run).
        burst: tokens available at once; defaults to one second's worth (at least 1).
        clock: monotonic clock (tests pass a fake one).
        sleep: how to wait (tests pass a fake one).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.taken = 0

    async def take(self) -> None:
        """Wait until a token is free and take it."""
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1 - 1e-9:  # float refill never lands exactly on 1
                    self._tokens -= 1
                    self.taken += 1
                    return
                await self._sleep((1 - self._tokens) / self.rate)
