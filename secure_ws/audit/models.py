"""The audit tables: one row per connection attempt, one per violation inside a connection.

Rows are written by :mod:`secure_ws.audit.writer` in batches, never on the handshake path.
Nothing secret is stored: no token, ticket, query string, password or message body; the
``path`` column holds the URL path only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from secure_ws.audit.records import (
    EVENT_DETAIL_LENGTH,
    EVENT_KIND_LENGTH,
    MAX_LENGTHS,
    OUTCOME_UNRECORDED,
)
from secure_ws.codes import AuthMethod, Outcome

__all__ = ["OUTCOME_UNRECORDED", "ConnectionRecord", "SecurityEvent"]

OUTCOME_CHOICES = [
    (Outcome.ACCEPTED.value, "accepted"),
    (Outcome.REFUSED.value, "refused"),
    (OUTCOME_UNRECORDED, "unrecorded (audit buffer full)"),
]
AUTH_METHOD_CHOICES = [(method.value, method.value) for method in AuthMethod]


class ConnectionRecord(models.Model):
    """One WebSocket connection attempt, accepted or refused, or an aggregate of refusals.

    An aggregate row (``aggregated``) stands for ``count`` refusals with the same client
    IP, reason and minute, so a flood costs one row, not thousands; summing ``count``
    always gives the exact number of attempts.
    """

    connection_id = models.CharField(max_length=MAX_LENGTHS["connection_id"], unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ws_connections",
    )
    username = models.CharField(max_length=MAX_LENGTHS["username"], blank=True)
    client_ip = models.CharField(max_length=MAX_LENGTHS["client_ip"], blank=True)
    origin = models.CharField(max_length=MAX_LENGTHS["origin"], blank=True)
    user_agent = models.CharField(max_length=MAX_LENGTHS["user_agent"], blank=True)
    path = models.CharField(max_length=MAX_LENGTHS["path"], blank=True)
    auth_method = models.CharField(
        max_length=MAX_LENGTHS["auth_method"], choices=AUTH_METHOD_CHOICES, blank=True
    )
    outcome = models.CharField(max_length=MAX_LENGTHS["outcome"], choices=OUTCOME_CHOICES)
    reason = models.CharField(max_length=MAX_LENGTHS["reason"], blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    close_code = models.IntegerField(null=True, blank=True)
    messages_in = models.PositiveBigIntegerField(default=0)
    messages_out = models.PositiveBigIntegerField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)
    violations = models.PositiveIntegerField(default=0)
    count = models.PositiveIntegerField(default=1, help_text="attempts this row stands for")
    aggregated = models.BooleanField(default=False)
    note = models.CharField(max_length=MAX_LENGTHS["note"], blank=True)
    server = models.CharField(max_length=MAX_LENGTHS["server"], blank=True, help_text="host:pid")
    channel_name = models.CharField(max_length=MAX_LENGTHS["channel_name"], blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [
            models.Index(fields=["-opened_at"], name="sws_conn_opened"),
            models.Index(fields=["outcome", "-opened_at"], name="sws_conn_outcome"),
            models.Index(fields=["reason", "-opened_at"], name="sws_conn_reason"),
            models.Index(fields=["client_ip", "-opened_at"], name="sws_conn_ip"),
            models.Index(fields=["user", "-opened_at"], name="sws_conn_user"),
            models.Index(fields=["origin"], name="sws_conn_origin"),
            models.Index(fields=["auth_method"], name="sws_conn_auth"),
            models.Index(
                fields=["closed_at"],
                name="sws_conn_live",
                condition=models.Q(outcome="accepted", closed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        who = self.username or self.client_ip or "?"
        return f"{self.outcome} {who} {self.connection_id[:12]}"

    @property
    def is_live(self) -> bool:
        """Whether the connection was accepted and its close has not been recorded."""
        return self.outcome == Outcome.ACCEPTED.value and self.closed_at is None


class SecurityEvent(models.Model):
    """One violation inside an accepted connection, with a short secret-free detail."""

    record = models.ForeignKey(
        ConnectionRecord, on_delete=models.CASCADE, related_name="security_events"
    )
    kind = models.CharField(max_length=EVENT_KIND_LENGTH)
    detail = models.CharField(max_length=EVENT_DETAIL_LENGTH, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["kind", "-created_at"], name="sws_event_kind")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.created_at:%Y-%m-%d %H:%M:%S}"

