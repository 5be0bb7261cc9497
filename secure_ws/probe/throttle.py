"""The probe's global token bucket: it never floods a host by accident.

Every handshake and every message the probe sends, on any connection, takes one token,
so ``--max-rate`` bounds the probe's total load however many connections are open.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """A token bucket shared by every connection of one probe run.

    Args:
        rate: tokens per second (operations per second across the whole run).
        burst: tokens available at once; defaults to one second's worth (at least 1).
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()
        self.taken = 0

    async def take(self) -> None:
        """Wait until a token is free and take it."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    self.taken += 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
