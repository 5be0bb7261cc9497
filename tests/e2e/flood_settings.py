"""Test settings for refusal floods: a small handshake bucket and a small refusal log budget."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {
    **SECURE_WS,
    "HANDSHAKE_RATE": 1,  # per minute: the bucket does not refill during the test
    "HANDSHAKE_BURST": 5,
    "REFUSAL_MODE": "close",  # the client sees the reason code
    "REFUSAL_LOG_LINES": 3,
    "REFUSAL_LOG_INTERVAL": 10.0,
    "AUDIT_AGGREGATE_THRESHOLD": 5,
    "AUDIT_FLUSH_INTERVAL": 0.2,
}
