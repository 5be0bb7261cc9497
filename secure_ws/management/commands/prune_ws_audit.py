"""``manage.py prune_ws_audit [--older-than 90d]``: delete old audit rows in batches.

Deleting in batches keeps each transaction (and its locks) short, so the writer and the
admin are never held up by a retention run on a large table.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from secure_ws.audit.models import ConnectionRecord
from secure_ws.conf import get_settings
from secure_ws.sessions.models import RevokedSession

_AGE = re.compile(r"^(\d+)([dhm]?)$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "": "days"}


def parse_age(text: str) -> timedelta:
    """Parse ``90d``, ``12h``, ``30m`` or a bare number of days.

    Raises:
        CommandError: for anything else, or a zero age.
    """
    match = _AGE.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise CommandError("--older-than takes a positive age such as 90d, 12h or 30m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete WebSocket audit rows older than an age (default: RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default=None, help="age such as 90d, 12h, 30m")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        age = (
            parse_age(options["older_than"])
            if options["older_than"]
            else timedelta(days=get_settings().RETENTION_DAYS)
        )
        batch = options["batch_size"]
        if batch <= 0:
            raise CommandError("--batch-size must be positive")
        cutoff = timezone.now() - age
        old = ConnectionRecord.objects.filter(opened_at__lt=cutoff)
        if options["dry_run"]:
            self.stdout.write(f"would delete {old.count()} connection records before {cutoff}")
            return
        total = 0
        while True:
            ids = list(old.values_list("pk", flat=True)[:batch])
            if not ids:
                break
            # Security events go with their record (CASCADE).
            ConnectionRecord.objects.filter(pk__in=ids).delete()
            total += len(ids)
        expired, _ = RevokedSession.objects.filter(expires_at__lt=timezone.now()).delete()
        self.stdout.write(
            f"deleted {total} connection records before {cutoff:%Y-%m-%d %H:%M} "
            f"and {expired} expired revoked sessions"
        )
