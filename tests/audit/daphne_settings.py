"""Test settings for daphne processes of the audit tests: a low aggregation threshold."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {
    **SECURE_WS,
    "AUDIT_AGGREGATE_THRESHOLD": 5,
    "AUDIT_FLUSH_INTERVAL": 0.2,
    # The refusal flood here is about audit aggregation: keep the handshake throttle (which
    # counts refused attempts too) out of its way.
    "HANDSHAKE_BURST": 1000,
}
