"""Traffic accounting and limit enforcement for one open connection.

:class:`ConnectionTraffic` counts every frame into the connection's
:class:`~secure_ws.connection.ConnectionInfo` (the audit record's message and byte
counters) and decides whether an incoming frame may pass the size and rate limits. It
does no I/O: it answers with a :class:`FrameVerdict` that the consumer turns into an
``error`` reply or a close, so the policy is testable without a socket and costs a few
float operations per message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from secure_ws.codes import CloseCode, ErrorCode, Reason
from secure_ws.connection import ConnectionInfo
from secure_ws.consumer.limits import ConnectionLimits, MessageRateLimiter, SlidingWindowCounter
from secure_ws.exceptions import MessageRejected

#: Error codes that count towards the violation window (``VIOLATION_LIMIT``).
VIOLATION_CODES = frozenset(
    {
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_MESSAGE,
        ErrorCode.UNKNOWN_TYPE,
        ErrorCode.FORBIDDEN,
        ErrorCode.TOO_LARGE,
        ErrorCode.RATE_LIMITED,
    }
)


@dataclass(frozen=True)
class FrameVerdict:
    """What to do with one incoming frame: pass it on, answer it with ``error``, or close.

    Attributes:
        rejection: answer the frame with this error instead of handling it.
        close: close the connection with this code and reason instead.
        violation: whether the rejection counts towards the violation window.
    """

    rejection: MessageRejected | None = None
    close: tuple[CloseCode, Reason] | None = None
    violation: bool = True

    @property
    def admitted(self) -> bool:
        """Whether the frame goes on to validation and its handler."""
        return self.rejection is None and self.close is None


ADMIT = FrameVerdict()


class ConnectionTraffic:
    """The counters, buckets and violation window of one open connection."""

    __slots__ = (
        "info",
        "last_activity",
        "limits",
        "rate_limited_streak",
        "rate_limiter",
        "violation_window",
    )

    def __init__(self, info: ConnectionInfo, limits: ConnectionLimits) -> None:
        self.info = info
        self.limits = limits
        self.rate_limiter = MessageRateLimiter(limits)
        self.violation_window = SlidingWindowCounter(
            limits.violation_limit, limits.violation_window
        )
        self.rate_limited_streak = 0
        self.last_activity = time.monotonic()

    def received(self, nbytes: int) -> FrameVerdict:
        """Count one client frame of ``nbytes`` and judge it against size and rate limits.

        A frame far over the size limit closes 1009 (a client that sends one is broken or
        hostile); one just over it is answered ``too_large``. A rate-limited frame is
        answered ``rate_limited``; ``rate_limit_close_after`` of them in a row close 4429.
        Only the first of a streak counts as a violation, so a flood ends with 4429 and
        repeated bursts with 1008.
        """
        info = self.info
        info.messages_in += 1
        info.bytes_in += nbytes
        self.last_activity = time.monotonic()
        limits = self.limits
        if nbytes > limits.max_message_bytes:
            if nbytes > limits.max_message_bytes * limits.oversize_close_factor:
                return FrameVerdict(close=(CloseCode.MESSAGE_TOO_BIG, Reason.TOO_LARGE))
            return FrameVerdict(rejection=MessageRejected(ErrorCode.TOO_LARGE, "Message too large"))
        if self.rate_limiter.allow(nbytes):
            self.rate_limited_streak = 0
            return ADMIT
        self.rate_limited_streak += 1
        if self.rate_limited_streak >= limits.rate_limit_close_after:
            return FrameVerdict(close=(CloseCode.RATE_LIMITED, Reason.RATE_LIMITED))
        return FrameVerdict(
            rejection=MessageRejected(ErrorCode.RATE_LIMITED, "Too many messages"),
            violation=self.rate_limited_streak == 1,
        )

    def sent(self, nbytes: int) -> None:
        """Count one server frame of ``nbytes``."""
        self.info.messages_out += 1
        self.info.bytes_out += nbytes

    def violation(self) -> bool:
        """Count one violation; return ``True`` when the window's limit is reached."""
        self.info.violations += 1
        return self.violation_window.add()
