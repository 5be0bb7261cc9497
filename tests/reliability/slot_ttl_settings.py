"""Test settings with a short ``CONNECTION_SLOT_TTL`` and one connection per user.

A server process reads its settings once, so the short slot lifetime needs a settings
module of its own.
"""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

#: Seconds a slot counts after its process last confirmed it (heartbeat every third).
CONNECTION_SLOT_TTL = 2

SECURE_WS = {
    **SECURE_WS,
    "CONNECTION_SLOT_TTL": CONNECTION_SLOT_TTL,
    "MAX_CONNECTIONS_PER_USER": 1,
}
