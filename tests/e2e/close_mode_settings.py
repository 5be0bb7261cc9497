"""Test settings with ``REFUSAL_MODE = "close"``: refusals accept, send ``error``, then close."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "REFUSAL_MODE": "close"}
