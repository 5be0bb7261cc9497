"""Django's entry point for the app's models; they live in :mod:`secure_ws.audit.models`."""

from __future__ import annotations

from secure_ws.audit.models import ConnectionRecord, RevokedSession, SecurityEvent

__all__ = ["ConnectionRecord", "RevokedSession", "SecurityEvent"]
