"""Settings of a server that a module's tests share (``shared_asgi_server``).

No audit rows: each test's users are deleted when it ends, and a record the server writes a
moment later would name a user that is gone. The tests that read audit rows start their own
server.
"""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "AUDIT_SINKS": ["log", "metrics"]}
