"""What the probe knows: its configuration, a check's description and a check's result.

Nothing here imports Django, so the scanner runs against any WebSocket endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secure_ws.probe.session import ProbeSession

#: Longest evidence line kept in a result; the table and reports never wrap.
EVIDENCE_MAX_CHARS = 200

#: What replaces a secret wherever it would appear in evidence.
REDACTED = "[redacted]"


class Verdict(StrEnum):
    """The outcome of one check."""

    PASS = "PASS"  # noqa: S105
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict with one line of evidence (already redacted)."""

    check_id: str
    verdict: Verdict
    evidence: str
    duration: float = 0.0


CheckFunc = Callable[["ProbeSession"], Awaitable[tuple[Verdict, str]]]


@dataclass(frozen=True)
class Check:
    """A registered check: what it tries, why, and the coroutine that tries it."""

    id: str
    group: str
    title: str
    rationale: str
    owasp: str
    func: CheckFunc


@dataclass
class ProbeConfig:
    """Everything the probe needs to know about the target and how hard to push it.

    Attributes:
        url: the ``ws://`` or ``wss://`` endpoint.
        token: an access token presented as the user would (never printed).
        token_via: ``"subprotocol"`` (``bearer.<jwt>`` entry, the browser way) or ``"header"``.
        headers: extra handshake headers as ``(name, value)``; values are never printed.
        subprotocols: extra subprotocols to offer.
        ticket_url: URL that issues a one-time ticket (POST) for each connection.
        origin: the origin the site expects (default: derived from ``url``).
        hostile_origins: extra origins that must be refused.
        signing_key: HMAC key of the target's JWTs, to forge expired/other-alg tokens.
        timeout: seconds a single check may take.
        max_rate: operations per second (handshakes and messages) across all connections.
        flood_messages: messages sent by the message-flood check.
        flood_connections: concurrent connections opened by the connection-flood check.
        wait: seconds the idle and slow-handshake checks wait for the server to give up.
        oversize_bytes: size of the oversized-message probe (256 KiB: above common
            application limits, below daphne's 1 MiB transport limit).
        handshake_rate: handshakes per second at most (None: only ``max_rate``, until the
            target throttles a known-good handshake; then the probe paces itself).
    """

    url: str
    token: str | None = None
    token_via: str = "subprotocol"  # noqa: S105
    headers: list[tuple[str, str]] = field(default_factory=list)
    subprotocols: list[str] = field(default_factory=list)
    ticket_url: str | None = None
    origin: str | None = None
    hostile_origins: list[str] = field(default_factory=list)
    signing_key: str | None = None
    timeout: float = 20.0
    max_rate: float = 50.0
    flood_messages: int = 150
    flood_connections: int = 60
    wait: float = 8.0
    oversize_bytes: int = 256 * 1024
    handshake_rate: float | None = None

    def secrets(self) -> Iterable[str]:
        """Yield every value that must never reach evidence, reports or logs."""
        if self.token:
            yield self.token
        for _name, value in self.headers:
            if value:
                yield value
        if self.signing_key:
            yield self.signing_key


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` as one line with every secret (and JWT-looking string) replaced."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    # Tokens the probe forged itself, or the server handed back, are secrets too.
    text = re.sub(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", REDACTED, text)
    line = " ".join(text.split())
    if len(line) > EVIDENCE_MAX_CHARS:
        line = line[: EVIDENCE_MAX_CHARS - 3] + "..."
    return line
