"""Turning buffered audit records into rows: bulk inserts, close updates, counted rows.

:mod:`secure_ws.audit.writer` decides when to write and what to keep on failure; this module
only knows how a batch maps to ``ConnectionRecord`` and ``SecurityEvent`` rows. An open and
its close in the same batch become one insert; the closes whose open was written earlier
become one statement: ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL (no SELECT first),
``in_bulk`` + ``bulk_update`` elsewhere.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import router
from django.db.models import F

from secure_ws.audit.records import (
    CLOSE_FIELDS,
    COUNTER_FIELDS,
    KEEP_IF_EMPTY,
    MAX_LENGTHS,
    PendingRecord,
)
from secure_ws.codes import Outcome

logger = logging.getLogger("secure_ws.audit.writer")

#: Identity of this process, stored in every row (which process held a connection).
SERVER_ID = f"{socket.gethostname()[:100]}:{os.getpid()}"

#: PostgreSQL type of each close column, for the typed ``VALUES`` list of the close UPDATE.
_CLOSE_SQL_TYPES = {
    "closed_at": "timestamptz",
    "duration": "double precision",
    "close_code": "integer",
    "messages_in": "bigint",
    "messages_out": "bigint",
    "bytes_in": "bigint",
    "bytes_out": "bigint",
    "violations": "integer",
    "channel_name": "varchar",
    "reason": "varchar",
    "note": "varchar",
}


def to_datetime(epoch: float) -> datetime:
    """Return the aware UTC datetime of an epoch timestamp."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def audit_alias() -> str:
    """Return the database alias audit rows are written to (routers may move them)."""
    from secure_ws.audit.models import ConnectionRecord

    return router.db_for_write(ConnectionRecord) or "default"


def write_batch(batch: list[PendingRecord]) -> None:
    """Write one batch of buffered records (call inside a transaction on :func:`audit_alias`)."""
    from secure_ws.audit.models import ConnectionRecord, SecurityEvent

    created: dict[str, ConnectionRecord] = {}
    closes: list[PendingRecord] = []
    events: list[PendingRecord] = []
    for record in batch:
        if record.kind in ("open", "refuse"):
            created[record.fields["connection_id"]] = new_row(record)
        elif record.kind == "close":
            row = created.get(record.fields["connection_id"])
            if row is not None:
                apply_close(row, record)
            else:
                closes.append(record)
        else:
            events.append(record)
    drop_unknown_users(created.values())
    ConnectionRecord.objects.bulk_create(created.values())
    if closes:
        missing_opens = update_closes(closes)
        for record in {c.fields["connection_id"]: c for c in closes}.values():
            if record.fields["connection_id"] in missing_opens:
                # The open went to an earlier process or was pruned: keep the close.
                row = new_row(PendingRecord("open", record.at, record.fields))
                apply_close(row, record)
                drop_unknown_users([row])
                row.save()
    if events:
        ids = {e.fields["connection_id"] for e in events}
        rows = {cid: row.pk for cid, row in created.items() if cid in ids}
        missing = ids - rows.keys()
        if missing:
            rows.update(
                ConnectionRecord.objects.filter(connection_id__in=missing).values_list(
                    "connection_id", "pk"
                )
            )
        SecurityEvent.objects.bulk_create(
            SecurityEvent(
                record_id=rows[e.fields["connection_id"]],
                kind=e.event_kind,
                detail=e.detail,
                created_at=to_datetime(e.at),
            )
            for e in events
            if e.fields["connection_id"] in rows
        )
        for e in events:
            if e.fields["connection_id"] not in rows:
                logger.warning(
                    "security event without a connection record: connection_id=%s",
                    e.fields["connection_id"],
                )


def update_closes(closes: list[PendingRecord]) -> set[str]:
    """Write the final counters of closes whose open row exists; return the ids with no row.

    On PostgreSQL this is one ``UPDATE ... FROM (VALUES ...) RETURNING`` keyed on the unique
    ``connection_id``: no SELECT of the rows first and no per-row ``CASE WHEN``.
    """
    from django.db import connections

    from secure_ws.audit.models import ConnectionRecord

    latest = {c.fields["connection_id"]: c for c in closes}
    alias = router.db_for_write(ConnectionRecord) or "default"
    if connections[alias].vendor != "postgresql":
        return _update_closes_portable(latest)
    table = connections[alias].ops.quote_name(ConnectionRecord._meta.db_table)
    columns = ("connection_id", *CLOSE_FIELDS)
    row_sql = "(%s::varchar, " + ", ".join(f"%s::{_CLOSE_SQL_TYPES[c]}" for c in CLOSE_FIELDS) + ")"
    params: list[Any] = []
    for connection_id, record in latest.items():
        values = close_values(record)
        params += [connection_id, *(values[c] for c in CLOSE_FIELDS)]
    assignments = ", ".join(
        f"{c} = CASE WHEN v.{c} <> '' THEN v.{c} ELSE t.{c} END"
        if c in KEEP_IF_EMPTY
        else f"{c} = v.{c}"
        for c in CLOSE_FIELDS
    )
    # Only the quoted table name, our own column names and placeholders are interpolated;
    # values are parameters.
    sql = (
        f"UPDATE {table} AS t SET {assignments}"  # noqa: S608
        f" FROM (VALUES {', '.join([row_sql] * len(latest))})"
        f" AS v({', '.join(columns)})"
        " WHERE t.connection_id = v.connection_id RETURNING t.connection_id"
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        found = {row[0] for row in cursor.fetchall()}
    return set(latest) - found


def _update_closes_portable(latest: dict[str, PendingRecord]) -> set[str]:
    from secure_ws.audit.models import ConnectionRecord

    existing = ConnectionRecord.objects.in_bulk(list(latest), field_name="connection_id")
    for connection_id, record in latest.items():
        if connection_id in existing:
            apply_close(existing[connection_id], record)
    ConnectionRecord.objects.bulk_update(existing.values(), CLOSE_FIELDS)
    return set(latest) - set(existing)


def drop_unknown_users(rows: Iterable[Any]) -> None:
    """Unlink users deleted since the record was buffered (the username snapshot stays)."""
    from django.contrib.auth import get_user_model

    wanted = {row.user_id for row in rows if row.user_id is not None}
    if not wanted:
        return
    known = set(
        get_user_model()._default_manager.filter(pk__in=wanted).values_list("pk", flat=True)
    )
    for row in rows:
        if row.user_id is not None and row.user_id not in known:
            row.user_id = None


def new_row(record: PendingRecord) -> Any:
    from secure_ws.audit.models import ConnectionRecord

    f = record.fields
    accepted = record.kind == "open"
    return ConnectionRecord(
        connection_id=f["connection_id"],
        user_id=f["user_id"],
        username=f["username"],
        client_ip=f["client_ip"],
        origin=f["origin"],
        user_agent=f["user_agent"],
        path=f["path"],
        auth_method=f["auth_method"],
        outcome=Outcome.ACCEPTED.value if accepted else Outcome.REFUSED.value,
        reason="" if accepted else f.get("reason", ""),
        opened_at=to_datetime(f["opened_at"]),
        closed_at=None if accepted else to_datetime(record.at),
        server=SERVER_ID,
        channel_name=f["channel_name"],
    )


def close_values(record: PendingRecord) -> dict[str, Any]:
    """Return the :data:`~secure_ws.audit.records.CLOSE_FIELDS` values of a close record."""
    f = record.fields
    return {
        "closed_at": to_datetime(record.at),
        "duration": max(0.0, record.at - f["opened_at"]),
        "close_code": f["close_code"],
        **{name: f[name] for name in COUNTER_FIELDS},
        "channel_name": f["channel_name"],
        # The reason of a close the server decided (``slow_consumer``, ``revoked``, ...).
        "reason": f.get("reason", ""),
        "note": f.get("note", "")[: MAX_LENGTHS["note"]],
    }


def apply_close(row: Any, record: PendingRecord) -> None:
    """Copy a close record's values onto the row of its open."""
    for name, value in close_values(record).items():
        if name in KEEP_IF_EMPTY and not value:
            continue
        setattr(row, name, value)


def bump_row(
    connection_id: str,
    count: int,
    *,
    client_ip: str,
    reason: str,
    minute: int,
    outcome: str,
    note: str,
    origin: str = "",
    path: str = "",
    user_agent: str = "",
    violations: int = 0,
) -> None:
    from secure_ws.audit.models import ConnectionRecord

    updated = ConnectionRecord.objects.filter(connection_id=connection_id).update(
        count=F("count") + count, violations=F("violations") + violations
    )
    if not updated:
        ConnectionRecord.objects.create(
            connection_id=connection_id,
            client_ip=client_ip,
            origin=origin,
            path=path,
            user_agent=user_agent,
            outcome=outcome,
            reason=reason,
            opened_at=to_datetime(minute * 60),
            closed_at=to_datetime(minute * 60),
            count=count,
            violations=violations,
            aggregated=True,
            note=note[: MAX_LENGTHS["note"]],
            server=SERVER_ID,
        )
