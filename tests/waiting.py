"""Polling under a deadline: how a test waits for something to happen.

A fixed sleep either waits too long (slow suite) or not long enough (flaky on a loaded
machine). These helpers return as soon as the predicate holds and fail with a message once
the deadline passes; the deadline is generous because only a failing test ever reaches it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Seconds a test waits for something that normally happens within a second or two.
DEADLINE = 15.0
#: Seconds between two looks.
INTERVAL = 0.05


class WaitTimeout(AssertionError):
    """The predicate did not hold before the deadline (an assertion: the test fails)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEADLINE,
    interval: float = INTERVAL,
    message: str = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    Raises :class:`WaitTimeout` after ``timeout`` seconds (the last look is taken at the
    deadline, so a predicate that becomes true just in time still passes).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{message} did not hold within {timeout} s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = DEADLINE,  # noqa: ASYNC109 (the same call as wait_until's)
    interval: float = INTERVAL,
    message: str = "condition",
) -> T:
    """:func:`wait_until` for the event loop: ``predicate`` may be a plain or async callable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise WaitTimeout(f"{message} did not hold within {timeout} s")
        await asyncio.sleep(interval)
