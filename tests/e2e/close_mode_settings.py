"""Test settings with ``REFUSAL_MODE = "close"``: refusals accept, send ``error``, then close.

The server is shared by the module's tests: no audit rows (see ``shared_settings``).
"""

from tests.e2e.shared_settings import *  # noqa: F403
from tests.e2e.shared_settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "REFUSAL_MODE": "close"}
