"""The audit record, declared once: its columns, their sizes, and how a call becomes a row.

``ConnectionRecord`` (the model) takes its text sizes from :data:`MAX_LENGTHS`; the storage
SQL builds its close ``UPDATE`` from :data:`CLOSE_FIELDS`; the admin exports
:data:`EXPORT_FIELDS`; the writer fills :data:`OPEN_FIELDS` from the connection. A test
checks :data:`RECORD_FIELDS` against the model, so a column added in one place only fails
loudly.

An audit call on the event loop stores an :data:`Entry`: the kind, the time, the
connection's :class:`~secure_ws.connection.ConnectionInfo` and the call's own arguments
(for a close, the final counters, copied because the info object lives on). Everything
else (clipping, the JSON line, the row) is done from it later, by the flusher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from secure_ws.connection import ConnectionInfo
from secure_ws.logsafe import escape_for_log

RecordKind = Literal["open", "refuse", "close", "event"]

#: Outcome of the rows that account for audit records lost when the buffer was full.
OUTCOME_UNRECORDED = "unrecorded"

#: One audit call as the event loop stored it: ``(kind, at, info, arguments)``, where the
#: arguments are ``None`` (open), the reason (refuse), ``(kind, detail)`` (event) or
#: ``(close_code, counters, close_reason, events_dropped)`` (close).
Entry = tuple[RecordKind, float, ConnectionInfo, Any]

#: The traffic counters of a connection, in the order a close entry carries them.
COUNTER_FIELDS = ("messages_in", "messages_out", "bytes_in", "bytes_out", "violations")

#: Every column of ``ConnectionRecord`` (``attname``), in the model's order.
RECORD_FIELDS = (
    "connection_id",
    "user_id",
    "username",
    "client_ip",
    "origin",
    "user_agent",
    "path",
    "auth_method",
    "outcome",
    "reason",
    "opened_at",
    "closed_at",
    "duration",
    "close_code",
    *COUNTER_FIELDS,
    "count",
    "aggregated",
    "note",
    "server",
    "channel_name",
)

#: Size of each text column (the model's ``max_length``; snapshots are clipped to it).
MAX_LENGTHS = {
    "connection_id": 64,
    "username": 150,
    "client_ip": 64,
    "origin": 255,
    "user_agent": 256,
    "path": 255,
    "auth_method": 16,
    "outcome": 16,
    "reason": 32,
    "note": 255,
    "server": 128,
    "channel_name": 128,
}

#: Columns an open or a refusal copies from the connection.
OPEN_FIELDS = (
    "connection_id",
    "user_id",
    "username",
    "client_ip",
    "origin",
    "user_agent",
    "path",
    "auth_method",
    "opened_at",
    "channel_name",
)

#: Columns a close writes into the row of its open. The last three keep the open's value
#: when the close has none.
CLOSE_FIELDS = (
    "closed_at",
    "duration",
    "close_code",
    *COUNTER_FIELDS,
    "channel_name",
    "reason",
    "note",
)
KEEP_IF_EMPTY = ("channel_name", "reason", "note")

#: Columns of the admin's CSV export, in order.
EXPORT_FIELDS = (
    "opened_at",
    "closed_at",
    "connection_id",
    "outcome",
    "reason",
    "count",
    "username",
    "client_ip",
    "origin",
    "path",
    "auth_method",
    "duration",
    "close_code",
    *COUNTER_FIELDS,
    "user_agent",
    "server",
)

#: Sizes of a security event's text columns.
EVENT_KIND_LENGTH = 32
EVENT_DETAIL_LENGTH = 255


@dataclass(slots=True)
class PendingRecord:
    """One audit record waiting for the database: clipped, secret-free column values."""

    kind: RecordKind
    at: float
    fields: dict[str, Any]
    event_kind: str = ""
    detail: str = ""

    @property
    def connection_id(self) -> str:
        return str(self.fields["connection_id"])


def clip(value: str | None, field: str) -> str:
    """Return ``value`` cut to the size of column ``field`` (``""`` for ``None``)."""
    return (value or "")[: MAX_LENGTHS[field]]


def snapshot(info: ConnectionInfo) -> dict[str, Any]:
    """Return the open columns of ``info``: never a token, ticket or query string."""
    return {
        "connection_id": clip(info.connection_id, "connection_id"),
        "user_id": info.user_id,
        "username": clip(info.username, "username"),
        "client_ip": clip(info.client_ip, "client_ip"),
        "origin": clip(info.origin, "origin"),
        "user_agent": clip(info.user_agent, "user_agent"),
        # ASGI paths carry no query string; strip one anyway, it may hold a token.
        "path": clip(info.path.split("?", 1)[0], "path"),
        "auth_method": info.auth_method.value,
        "opened_at": info.opened_at,
        "channel_name": clip(info.channel_name, "channel_name"),
    }


def close_counters(info: ConnectionInfo) -> tuple[int, int, int, int, int]:
    """The connection's final counters, in :data:`COUNTER_FIELDS` order."""
    return (info.messages_in, info.messages_out, info.bytes_in, info.bytes_out, info.violations)


def to_pending(entry: Entry) -> PendingRecord:
    """Turn one stored audit call into the record the database sink writes."""
    kind, at, info, arguments = entry
    fields = snapshot(info)
    if kind == "refuse":
        fields["reason"] = str(arguments)
        return PendingRecord(kind, at, fields)
    if kind == "event":
        event_kind, detail = arguments
        # The detail may quote client input (a message type, a name).
        return PendingRecord(
            kind,
            at,
            {"connection_id": fields["connection_id"]},
            event_kind=escape_for_log(event_kind)[:EVENT_KIND_LENGTH],
            detail=escape_for_log(detail)[:EVENT_DETAIL_LENGTH],
        )
    if kind == "close":
        close_code, counters, close_reason, events_dropped = arguments
        fields.update(zip(COUNTER_FIELDS, counters, strict=True))
        fields["close_code"] = close_code
        fields["reason"] = clip(close_reason, "reason")
        fields["note"] = (
            f"{events_dropped} events dropped (slow consumer)" if events_dropped else ""
        )
    return PendingRecord(kind, at, fields)
