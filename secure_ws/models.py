"""Django's entry point for the app's models; they live in :mod:`secure_ws.audit.models` and
:mod:`secure_ws.sessions.models`."""

from __future__ import annotations

from secure_ws.audit.models import ConnectionRecord, SecurityEvent
from secure_ws.sessions.models import RevokedSession

__all__ = ["ConnectionRecord", "RevokedSession", "SecurityEvent"]
