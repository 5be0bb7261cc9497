"""Settings of the daphne processes behind nginx in the multi-process test.

``REQUIRE_TLS`` on (nginx terminates TLS and says so in ``X-Forwarded-Proto``), three
connections per user so that one user's sockets can sit on three processes, and a short
``CONNECTION_SLOT_TTL`` so that a killed process's slots expire within the test. A server
process reads its settings once, hence a module of its own.
"""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

#: Seconds a slot counts after its process last confirmed it (heartbeat every third).
CONNECTION_SLOT_TTL = 3
MAX_CONNECTIONS_PER_USER = 3

SECURE_WS = {
    **SECURE_WS,
    "REQUIRE_TLS": True,
    "CONNECTION_SLOT_TTL": CONNECTION_SLOT_TTL,
    "MAX_CONNECTIONS_PER_USER": MAX_CONNECTIONS_PER_USER,
}
