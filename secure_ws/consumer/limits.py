"""Per-connection limits: token buckets for messages and bytes, and a violation window.

These live in the consumer's memory (one connection is served by one process), so they
cost a few float operations per message and never touch Redis on the hot path.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


class TokenBucket:
    """Allows ``rate`` units per second with bursts of up to ``capacity`` units.

    Starts full, so a fresh connection can send a burst right away.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated = time.monotonic() if now is None else now

    def allow(self, amount: float = 1.0, now: float | None = None) -> bool:
        """Take ``amount`` units if they are there; return whether they were."""
        if now is None:
            now = time.monotonic()
        tokens = self.tokens + (now - self.updated) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.updated = now
        if tokens >= amount:
            self.tokens = tokens - amount
            return True
        self.tokens = tokens
        return False


class SlidingWindowCounter:
    """Counts events in the last ``window`` seconds and says when ``limit`` is reached.

    Keeps at most ``limit`` timestamps, so a flood cannot grow it. The deque (about 750
    bytes) is made at the first event: most connections never commit a violation.
    """

    __slots__ = ("events", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = float(window)
        self.events: deque[float] | None = None

    def add(self, now: float | None = None) -> bool:
        """Record one event; return ``True`` when ``limit`` events fall inside the window."""
        if now is None:
            now = time.monotonic()
        events = self.events
        if events is None:
            events = self.events = deque(maxlen=self.limit)
        events.append(now)
        return len(events) >= self.limit and now - events[0] <= self.window

    def count(self, now: float | None = None) -> int:
        """Return how many recorded events are still inside the window."""
        if now is None:
            now = time.monotonic()
        return sum(1 for stamp in self.events or () if now - stamp <= self.window)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one connection runs under, resolved once when it opens."""

    max_message_bytes: int
    max_json_depth: int
    allow_binary: bool
    message_rate: float
    message_burst: int
    byte_rate: int
    rate_limit_close_after: int
    violation_limit: int
    violation_window: float
    idle_timeout: float | None
    token_expiry_warning: float
    max_pending_output: int
    pending_output_timeout: float
    #: Frames larger than ``max_message_bytes * oversize_close_factor`` close with 1009
    #: instead of an error reply.
    oversize_close_factor: int = 4


def shared_limits(**values: Any) -> ConnectionLimits:
    """Return a :class:`ConnectionLimits` of ``values``, one shared object per distinct set.

    The limits are frozen and nearly always the same for every connection of a consumer
    class, so connections share one object instead of holding a copy each.
    """
    try:
        return _cached_limits(**values)
    except TypeError:  # an unhashable override: correct, just not shared
        return ConnectionLimits(**values)


_cached_limits = functools.lru_cache(maxsize=64)(ConnectionLimits)


#: The :class:`ConnectionLimits` fields read from the ``SECURE_WS`` setting of the same
#: name in upper case (a consumer class attribute of the field's name overrides it).
SETTING_LIMITS = tuple(
    name for name in ConnectionLimits.__dataclass_fields__ if name != "oversize_close_factor"
)


class MessageRateLimiter:
    """The message and byte buckets of one connection."""

    __slots__ = ("bytes", "messages")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.messages = TokenBucket(limits.message_rate, limits.message_burst)
        # A bucket smaller than the largest allowed frame would refuse that frame forever.
        self.bytes = TokenBucket(limits.byte_rate, max(limits.byte_rate, limits.max_message_bytes))

    def allow(self, nbytes: int) -> bool:
        """Account one message of ``nbytes``; return whether it is within both rates."""
        now = time.monotonic()
        if not self.messages.allow(1.0, now):
            return False
        return self.bytes.allow(float(nbytes), now)
