"""Django's entry point for the app's admin; the classes live in :mod:`secure_ws.audit.admin`."""

from __future__ import annotations

from django.contrib import admin

from secure_ws.audit.admin import ConnectionRecordAdmin
from secure_ws.audit.models import ConnectionRecord

admin.site.register(ConnectionRecord, ConnectionRecordAdmin)
