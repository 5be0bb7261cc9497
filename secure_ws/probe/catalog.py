"""Every probe check, in the order they run (flood and slow checks last, so they cannot
disturb the others), and the ``--only``/``--skip`` selection."""

from __future__ import annotations

from collections.abc import Iterable

from secure_ws.probe import (
    checks_auth,
    checks_common,
    checks_handshake,
    checks_limits,
    checks_messages,
    checks_origin,
)
from secure_ws.probe.model import Check
from secure_ws.probe.registry import registered

#: The check modules in run order.
_RUN_ORDER = (
    checks_common,
    checks_auth,
    checks_origin,
    checks_handshake,
    checks_messages,
    checks_limits,
)


def all_checks() -> list[Check]:
    """Return every check, in run order."""
    checks = registered()
    return [c for module in _RUN_ORDER for c in checks if c.func.__module__ == module.__name__]


def select_checks(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    """Return the checks ``--only``/``--skip`` leave, matching ids or id prefixes (``origin.``).

    Raises:
        ValueError: a pattern that matches no check (a typo would silently test nothing).
    """
    checks = all_checks()
    only, skip = list(only), list(skip)

    def matches(check_id: str, pattern: str) -> bool:
        return (
            check_id == pattern
            or (pattern.endswith(".") and check_id.startswith(pattern))
            or (check_id.split(".", 1)[0] == pattern)
        )

    for pattern in [*only, *skip]:
        if not any(matches(c.id, pattern) for c in checks):
            raise ValueError(f"no check matches {pattern!r}")
    if only:
        checks = [c for c in checks if any(matches(c.id, p) for p in only)]
    return [c for c in checks if not any(matches(c.id, p) for p in skip)]
