"""What the gate learns about a connection, carried in ``scope["secure_ws"]``.

The gate fills a :class:`ConnectionInfo` step by step; the consumer reads it and counts
traffic into it; the audit sink records it. It never holds a token, a ticket or a query
string: only what is safe to log.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from secure_ws.codes import AuthMethod

#: The scope key under which the gate stores the :class:`ConnectionInfo`.
SCOPE_KEY = "secure_ws"

#: User agents are truncated to this many characters before they are stored.
MAX_USER_AGENT_CHARS = 256


@dataclass
class ConnectionInfo:
    """The audit-safe facts about one connection attempt."""

    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_ip: str = ""
    scheme: str = "ws"
    path: str = ""
    host: str = ""
    origin: str | None = None
    user_agent: str = ""
    auth_method: AuthMethod = AuthMethod.NONE
    user_id: int | None = None
    username: str = ""
    token_exp: float | None = None
    token_jti: str | None = None
    session_id: str | None = None
    opened_at: float = field(default_factory=time.time)
    channel_name: str = ""
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    violations: int = 0
    #: Channel-layer events not sent because the client was not reading (slow consumer).
    events_dropped: int = 0
    #: The reason code of a close the server decided (``revoked``, ``slow_consumer``, ...).
    close_reason: str = ""


def get_connection_info(scope: dict[str, Any]) -> ConnectionInfo:
    """Return the scope's :class:`ConnectionInfo`, creating it on first use."""
    info = scope.get(SCOPE_KEY)
    if not isinstance(info, ConnectionInfo):
        info = ConnectionInfo(path=str(scope.get("path", "")))
        scope[SCOPE_KEY] = info
    return info
