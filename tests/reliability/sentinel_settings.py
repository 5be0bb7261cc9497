"""Test settings whose channel layer and shared state live behind a Redis Sentinel.

``SECURE_WS`` names no Redis (neither ``REDIS_URL`` nor ``REDIS_HOST``), so the gate's
state follows the channel layer's host entry: the Sentinel the test started, whose port
arrives in ``SECURE_WS_TEST_SENTINEL_PORT``. Two connections per user keep "a user at the
cap" cheap to reach; the slot lifetime stays at its default, so an expired slot cannot
pass for a released one.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SENTINEL_HOST = {
    "sentinels": [("127.0.0.1", int(os.environ.get("SECURE_WS_TEST_SENTINEL_PORT", "26379")))],
    "master_name": os.environ.get("SECURE_WS_TEST_SENTINEL_MASTER", "mymaster"),
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [SENTINEL_HOST], "prefix": "sentinel-test:layer"},
    }
}

MAX_CONNECTIONS_PER_USER = 2

SECURE_WS = {
    **{key: value for key, value in SECURE_WS.items() if key not in ("REDIS_URL", "REDIS_HOST")},
    "MAX_CONNECTIONS_PER_USER": MAX_CONNECTIONS_PER_USER,
}
