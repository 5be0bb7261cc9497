"""The check registry: every check's id, group, title, rationale and OWASP reference.

Checks register themselves with :func:`check` when their module is imported;
:func:`all_checks` imports the check modules and returns them in registration order, which
is the order they run in (flood and slow checks last, so they cannot disturb the others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from secure_ws.probe.model import Check, CheckFunc

#: The OWASP WebSocket Security Cheat Sheet, the reference every check maps to.
OWASP_WS = "https://cheatsheetseries.owasp.org/cheatsheets/WebSocket_Security_Cheat_Sheet.html"

#: Group names in the order they are reported.
GROUPS = (
    "baseline",
    "auth",
    "tokens",
    "origin",
    "transport",
    "handshake",
    "frames",
    "messages",
    "limits",
    "close",
)

_REGISTRY: dict[str, Check] = {}

_CHECK_MODULES = (
    "secure_ws.probe.checks_handshake",
    "secure_ws.probe.checks_messages",
    "secure_ws.probe.checks_limits",
)


def check(
    id: str, group: str, title: str, rationale: str, owasp: str
) -> Callable[[CheckFunc], CheckFunc]:
    """Register the decorated coroutine as check ``id``.

    Raises:
        ValueError: a duplicate id or an unknown group (a programming error).
    """
    if group not in GROUPS:
        raise ValueError(f"unknown check group {group!r}")

    def register(func: CheckFunc) -> CheckFunc:
        if id in _REGISTRY:
            raise ValueError(f"duplicate check id {id!r}")
        _REGISTRY[id] = Check(
            id=id, group=group, title=title, rationale=rationale, owasp=owasp, func=func
        )
        return func

    return register


def all_checks() -> list[Check]:
    """Return every registered check, in run order."""
    import importlib

    for module in _CHECK_MODULES:
        importlib.import_module(module)
    return list(_REGISTRY.values())


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
