"""Daphne settings where only the shutdown flush can write: huge interval and batch size."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "AUDIT_FLUSH_INTERVAL": 3600.0, "AUDIT_BATCH_SIZE": 10000}
