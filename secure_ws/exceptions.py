"""The exception tree of secure_ws.

::

    SecureWSError
     ├── Refused                 a connection is refused (gate or consumer)
     │    └── BackendUnavailable shared state (Redis, database) could not be read: fail closed
     └── MessageRejected         one client message is answered with an ``error`` frame

Each carries a reason code that is safe to show the client; ``detail`` is for the server log
only and never holds a secret or raw client input.
"""

from __future__ import annotations

from secure_ws.codes import REFUSAL_CLOSE_CODES, CloseCode, ErrorCode, Reason


class SecureWSError(Exception):
    """Base class of every error secure_ws raises on purpose."""


class Refused(SecureWSError):
    """A connection is refused for ``reason``; ``detail`` goes to the server log only."""

    default_close_code = CloseCode.POLICY_VIOLATION

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.detail = detail

    @property
    def close_code(self) -> CloseCode:
        """The close code used when the refusal is sent after accepting."""
        return REFUSAL_CLOSE_CODES.get(self.reason, self.default_close_code)


class BackendUnavailable(Refused):
    """Shared state could not be read, so the connection is refused (fail closed)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(Reason.BACKEND_UNAVAILABLE, detail)


class MessageRejected(SecureWSError):
    """One client message is refused with an ``error`` frame carrying ``code``."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str = "",
        errors: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(code.value)
        self.code = code
        self.detail = detail
        self.errors = errors
