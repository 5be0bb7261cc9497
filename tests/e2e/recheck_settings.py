"""Test settings with a tiny ``SUBSCRIPTION_RECHECK_INTERVAL``: the re-check on delivery."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "SUBSCRIPTION_RECHECK_INTERVAL": 0.2}
