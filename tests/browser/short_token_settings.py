"""Test settings with access tokens that live a few seconds, for the token-expiry browser tests.

simplejwt reads ``SIMPLE_JWT`` once per process (simplejwt#58), so a daphne process that
must issue short tokens needs a settings module of its own rather than an override.
"""

from datetime import timedelta

from tests.settings import *  # noqa: F403
from tests.settings import SIMPLE_JWT

#: Long enough for a login and a handshake, short enough to expire several times per test.
ACCESS_TOKEN_SECONDS = 8

SIMPLE_JWT = {**SIMPLE_JWT, "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ACCESS_TOKEN_SECONDS)}
