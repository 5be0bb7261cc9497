"""Per-user revocation: group names, kicking live connections, revoked sessions.

Every accepted connection joins :func:`user_group` for its user. Sending
:data:`REVOKE_EVENT_TYPE` to that group (or to one channel) closes the connection on
whatever process holds it with 4403 ``revoked``.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

#: Channel-layer event type a consumer handles by closing with 4403 ``revoked``.
#: Channels maps it to the consumer method ``secure_ws_revoke``.
REVOKE_EVENT_TYPE = "secure_ws.revoke"


def user_group(user_id: int | str) -> str:
    """Return the channel-layer group every connection of ``user_id`` joins."""
    return f"secure_ws.user.{user_id}"


def session_group(session_id: str) -> str:
    """Return the group of every connection opened with tokens of one login session (``sid``)."""
    return f"secure_ws.session.{session_id}"


async def kick_user(user_id: int | str, reason: str = "revoked") -> None:
    """Close every live connection of ``user_id`` on every process (4403)."""
    layer: Any = get_channel_layer()
    if layer is not None:
        await layer.group_send(user_group(user_id), {"type": REVOKE_EVENT_TYPE, "reason": reason})


async def kick_channel(channel_name: str, reason: str = "revoked") -> None:
    """Close the one live connection behind ``channel_name`` (4403)."""
    layer: Any = get_channel_layer()
    if layer is not None:
        await layer.send(channel_name, {"type": REVOKE_EVENT_TYPE, "reason": reason})
