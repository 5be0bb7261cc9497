"""The revoked login sessions table: a logged-out ``sid`` whose tokens the gate refuses."""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["RevokedSession"]


class RevokedSession(models.Model):
    """A login session (the ``sid`` claim) that was logged out: its tokens are refused.

    The database copy is the source of truth when Redis is not configured; with Redis a key
    with the refresh lifetime as TTL answers the gate without a query.
    """

    session_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    revoked_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"session {self.session_id[:12]}"
