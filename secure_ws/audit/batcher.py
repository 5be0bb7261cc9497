"""What the database is asked to write, and when: a pure object, no I/O, no lock, no clock.

:class:`AuditBatcher` holds the records waiting for the database and decides how they are
grouped, so that the database sees few statements and an attacker can neither hide
attempts nor flood the table:

* **coalescing**: an open and its close go in the same batch (one INSERT with the final
  counters); a background pass holds back an open younger than two flush intervals whose
  close has not arrived, with its events, because the close usually follows;
* **aggregation**: past ``AUDIT_AGGREGATE_THRESHOLD`` refusals with the same (client IP,
  reason, minute), the next ones only bump a counter, later written as one row whose
  ``count`` says how many attempts it stands for;
* **bounds and loss counting**: past ``AUDIT_BUFFER_SIZE`` waiting records a new one is not
  kept but counted, and the count is written as an ``unrecorded`` row; a close or event of
  a connection whose open was not kept is counted too. The sum of ``count`` over all rows
  is always the number of attempts.

The caller (:class:`~secure_ws.audit.writer.AuditWriter`) serialises access, passes the
time, and does the writing; a failed batch comes back with :meth:`AuditBatcher.requeue`.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from secure_ws.audit.records import PendingRecord
from secure_ws.conf import get_settings

#: (client IP, reason, minute since the epoch) of an aggregate of refusals.
Bucket = tuple[str, str, int]


@dataclass
class Aggregate:
    """Refusals past the threshold in one bucket: how many, and what the first looked like."""

    count: int = 0
    origin: str = ""
    path: str = ""
    user_agent: str = ""


@dataclass
class Lost:
    """Records counted but not kept: attempts (opens, refusals) and the rest."""

    attempts: int = 0
    other: int = 0
    #: Connections whose open was not kept: their close and events cannot be linked.
    opens: set[str] = field(default_factory=set)


class AuditBatcher:
    """Buffers records for the database sink and cuts them into batches."""

    def __init__(self) -> None:
        self._pending: deque[PendingRecord] = deque()
        self._held: list[PendingRecord] = []
        self._in_flight = 0
        self._minute_counts: dict[Bucket, int] = {}
        self.aggregates: dict[Bucket, Aggregate] = {}
        self.lost = Lost()
        #: Records lost since the last :meth:`take_loss_report`, by kind (for logs, metrics).
        self._unreported: Counter[str] = Counter()

    @property
    def depth(self) -> int:
        """Records waiting (held back ones included, in-flight ones not)."""
        return len(self._pending) + len(self._held)

    @property
    def has_counters(self) -> bool:
        """Whether aggregates or a loss count wait to be written."""
        return bool(self.aggregates or self.lost.attempts or self.lost.other)

    # -- intake ---------------------------------------------------------------------

    def add(self, record: PendingRecord) -> None:
        """Take one record: keep it, count it into an aggregate, or count it as lost."""
        if record.kind == "refuse":
            self._add_refusal(record)
        else:
            self._append(record)

    def lose(self, kind: str, connection_id: str) -> None:
        """Count a record that was not kept (here or before it reached the batcher)."""
        if kind in ("open", "refuse"):
            self.lost.attempts += 1
            if kind == "open":
                self.lost.opens.add(connection_id)
        else:
            self.lost.other += 1
        self._unreported[kind] += 1

    def take_loss_report(self) -> Counter[str]:
        """Return the records lost since the last call, by kind, and reset the count."""
        report, self._unreported = self._unreported, Counter()
        return report

    def _add_refusal(self, record: PendingRecord) -> None:
        settings = get_settings()
        bucket = (record.fields["client_ip"], record.fields["reason"], int(record.at // 60))
        seen = self._minute_counts.get(bucket, 0) + 1
        if seen == 1 and len(self._minute_counts) >= settings.AUDIT_BUFFER_SIZE:
            # Too many distinct sources this minute to track: aggregate at once.
            self._aggregate(bucket, record)
            return
        self._minute_counts[bucket] = seen
        if seen > settings.AUDIT_AGGREGATE_THRESHOLD:
            self._aggregate(bucket, record)
            return
        self._append(record)

    def _aggregate(self, bucket: Bucket, record: PendingRecord) -> None:
        entry = self.aggregates.get(bucket)
        if entry is None:
            if len(self.aggregates) >= get_settings().AUDIT_BUFFER_SIZE:
                self.lose(record.kind, record.connection_id)
                return
            f = record.fields
            entry = Aggregate(origin=f["origin"], path=f["path"], user_agent=f["user_agent"])
            self.aggregates[bucket] = entry
        entry.count += 1

    def _append(self, record: PendingRecord) -> None:
        connection_id = record.connection_id
        if record.kind != "open" and connection_id in self.lost.opens:
            # Its row was never kept: a close or event for it cannot be linked.
            if record.kind == "close":
                self.lost.opens.discard(connection_id)
            self.lose(record.kind, connection_id)
            return
        if self.depth + self._in_flight >= get_settings().AUDIT_BUFFER_SIZE:
            self.lose(record.kind, connection_id)
            return
        self._pending.append(record)

    # -- output ---------------------------------------------------------------------

    def take(self, *, final: bool, young_after: float) -> list[list[PendingRecord]]:
        """Return every waiting record cut into batches, opens next to their closes.

        Until :meth:`finish`, the records taken still count against the bound.

        Args:
            final: take every record. Otherwise an open newer than ``young_after`` (epoch
                seconds) whose close is not here stays, with its events.
            young_after: see ``final``.
        """
        records = [*self._held, *self._pending]
        self._held = []
        self._pending.clear()
        if not final:
            records = _hold_young_opens(records, young_after, self._held)
        records = _pair_closes(records)
        self._in_flight = len(records)
        size = get_settings().AUDIT_BATCH_SIZE
        batches: list[list[PendingRecord]] = []
        start = 0
        while start < len(records):
            end = min(start + size, len(records))
            if end < len(records) and _is_pair(records[end - 1], records[end]):
                end += 1  # never split an open from its close
            batches.append(records[start:end])
            start = end
        return batches

    def written(self, count: int) -> None:
        """``count`` taken records are in the database (or were counted as lost)."""
        self._in_flight = max(0, self._in_flight - count)

    def requeue(self, records: list[PendingRecord]) -> None:
        """Put taken records back at the front, in order, for the next :meth:`take`."""
        self._pending.extendleft(reversed(records))
        self.written(len(records))

    def finish(self) -> None:
        """End a write pass: held records go back to the front of the queue."""
        self._pending.extendleft(reversed(self._held))
        self._held = []
        self._in_flight = 0

    def take_counters(self) -> tuple[dict[Bucket, Aggregate], Lost]:
        """Return the aggregates and the loss count to write, and reset them."""
        aggregates, self.aggregates = self.aggregates, {}
        lost = self.lost
        self.lost = Lost(opens=lost.opens)
        return aggregates, lost

    def requeue_counters(self, aggregates: dict[Bucket, Aggregate], lost: Lost) -> None:
        """Add back counters whose write failed."""
        for bucket, entry in aggregates.items():
            current = self.aggregates.setdefault(bucket, Aggregate())
            current.count += entry.count
            current.origin = current.origin or entry.origin
            current.path = current.path or entry.path
            current.user_agent = current.user_agent or entry.user_agent
        self.lost.attempts += lost.attempts
        self.lost.other += lost.other

    def prune(self, now: float) -> None:
        """Forget the per-minute refusal counts older than the previous minute."""
        current = int(now // 60)
        for bucket in [b for b in self._minute_counts if b[2] < current - 1]:
            del self._minute_counts[bucket]


def _hold_young_opens(
    records: list[PendingRecord], young_after: float, held: list[PendingRecord]
) -> list[PendingRecord]:
    """Move the young opens whose close has not arrived (and their events) to ``held``.

    Return the records to write now.
    """
    closed = {r.connection_id for r in records if r.kind == "close"}
    held_ids: set[str] = set()
    write: list[PendingRecord] = []
    for record in records:
        connection_id = record.connection_id
        if connection_id in held_ids:
            held.append(record)
        elif record.kind == "open" and record.at > young_after and connection_id not in closed:
            held.append(record)
            held_ids.add(connection_id)
        else:
            write.append(record)
    return write


def _pair_closes(records: list[PendingRecord]) -> list[PendingRecord]:
    """Move each close right after its open (when both are here) so they share a batch.

    Events stay where they were: they are linked by connection id, in whatever batch.
    """
    opened = {r.connection_id for r in records if r.kind == "open"}
    moved: dict[str, PendingRecord] = {}
    for record in records:
        if record.kind == "close" and record.connection_id in opened:
            moved.setdefault(record.connection_id, record)
    if not moved:
        return records
    paired: list[PendingRecord] = []
    for record in records:
        connection_id = record.connection_id
        if record.kind == "close" and moved.get(connection_id) is record:
            continue
        paired.append(record)
        if record.kind == "open" and connection_id in moved:
            paired.append(moved[connection_id])
    return paired


def _is_pair(first: PendingRecord, second: PendingRecord) -> bool:
    return (
        first.kind == "open"
        and second.kind == "close"
        and first.connection_id == second.connection_id
    )
