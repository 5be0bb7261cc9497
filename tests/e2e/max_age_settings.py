"""Test settings with a short ``MAX_CONNECTION_AGE`` and anonymous connections allowed.

An anonymous connection has no credential expiry at all: it is the connection that only
``MAX_CONNECTION_AGE`` ends. A server process reads its settings once, so the short age
needs a settings module of its own.
"""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

#: Seconds an anonymous connection lives in these tests.
MAX_CONNECTION_AGE = 3

SECURE_WS = {
    **SECURE_WS,
    "REQUIRE_AUTHENTICATION": False,
    "MAX_CONNECTION_AGE": MAX_CONNECTION_AGE,
}
