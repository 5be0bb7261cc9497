"""The check registry: every check's id, group, title, rationale and OWASP reference.

Checks register themselves with :func:`check` when their module is imported;
:mod:`secure_ws.probe.catalog` imports every check module and decides the run order.
"""

from __future__ import annotations

from collections.abc import Callable

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


def registered() -> list[Check]:
    """Every check registered so far, in registration order (see :mod:`secure_ws.probe.catalog`)."""
    return list(_REGISTRY.values())
