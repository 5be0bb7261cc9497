"""Daphne settings for the database-outage test: audit tables behind a TCP proxy the test cuts.

The rest of the application keeps the direct database connection, so only the audit
writes see the outage, exactly like an audit database on its own server going down.
"""

import os
from typing import Any

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, SECURE_WS

DATABASES["audit"] = {
    **DATABASES["default"],
    "HOST": "127.0.0.1",
    "PORT": os.environ["AUDIT_DB_PROXY_PORT"],
}
DATABASE_ROUTERS = ["tests.audit.outage_settings.AuditRouter"]
SECURE_WS = {**SECURE_WS, "AUDIT_FLUSH_INTERVAL": 0.2}


class AuditRouter:
    """Send the audit tables' reads and writes to the ``audit`` alias."""

    audit_models = frozenset({"connectionrecord", "securityevent"})

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "audit" if model._meta.model_name in self.audit_models else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self.db_for_read(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True
