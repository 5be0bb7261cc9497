"""What the gate learns about a connection, carried in ``scope["secure_ws"]``.

The gate fills a :class:`ConnectionInfo` step by step; the consumer reads it and counts
traffic into it; the audit sink records it. It never holds a token, a ticket or a query
string: only what is safe to log. Every text field a client can influence is escaped
(:func:`~secure_ws.logsafe.escape_for_log`) as it is set, so no sink can write a forged line.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from secure_ws.codes import AuthMethod, Reason
from secure_ws.logsafe import escape_for_log

#: The scope key under which the gate stores the :class:`ConnectionInfo`.
SCOPE_KEY = "secure_ws"

#: User agents are truncated to this many characters before they are stored.
MAX_USER_AGENT_CHARS = 256

#: Fields whose text comes from the client (or a token it chose): escaped on assignment.
_CLIENT_TEXT_FIELDS = frozenset(
    {"client_ip", "path", "host", "origin", "user_agent", "username", "token_jti", "session_id"}
)


@dataclass(slots=True)
class ConnectionInfo:
    """The audit-safe facts about one connection attempt."""

    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_ip: str = ""
    scheme: str = "ws"
    #: The socket peer is one of ``TRUSTED_PROXIES`` (its forwarding headers were believed).
    via_trusted_proxy: bool = False
    path: str = ""
    host: str = ""
    origin: str | None = None
    user_agent: str = ""
    auth_method: AuthMethod = AuthMethod.NONE
    user_id: int | None = None
    username: str = ""
    #: When the credential behind the connection ends (token ``exp``, Django session expiry).
    token_exp: float | None = None
    #: The close reason at ``token_exp``: ``token_expired`` or ``session_expired``.
    expiry_reason: Reason = Reason.TOKEN_EXPIRED
    token_jti: str | None = None
    #: The login session: a token's ``sid``, or a hash of the Django session key, never the key.
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
    #: Gives the connection's cap slot back (set by the gate, idempotent). The consumer calls
    #: it as soon as the client's close arrives, before its own clean-up, so a client that
    #: reconnects at its cap is not refused by a slot its closed socket still holds.
    release_slot: Callable[[], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )


class _EscapedText:
    """A slot of :class:`ConnectionInfo` whose text is escaped as it is assigned.

    Escaping on assignment, not at each log call, covers every writer: the gate, consumers,
    the audit sink and anything a project adds later. Only the client text fields get this
    descriptor; the counters the consumer bumps per message stay plain slots.
    """

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return self.slot.__get__(obj, objtype)

    def __set__(self, obj: object, value: Any) -> None:
        if isinstance(value, str):
            value = escape_for_log(value)
        self.slot.__set__(obj, value)


for _name in _CLIENT_TEXT_FIELDS:
    setattr(ConnectionInfo, _name, _EscapedText(vars(ConnectionInfo)[_name]))


def get_connection_info(scope: dict[str, Any]) -> ConnectionInfo:
    """Return the scope's :class:`ConnectionInfo`, creating it on first use."""
    info = scope.get(SCOPE_KEY)
    if not isinstance(info, ConnectionInfo):
        info = ConnectionInfo(path=str(scope.get("path", "")))
        scope[SCOPE_KEY] = info
    return info
