"""Settings for the test suite: the demo project against the real PostgreSQL and Redis.

Every test run gets its own Redis key prefix so that runs sharing one Redis server (two
developers, two CI jobs) never see each other's keys.
"""

import os
import uuid

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "s" * 40)
os.environ.setdefault("JWT_SIGNING_KEY", "test-jwt-signing-key-" + "j" * 40)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/secure_ws")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECURE_WS_KEY_PREFIX", f"swtest-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("DEBUG", "0")
# The test client speaks plain HTTP: no HTTPS redirect (production default is on).
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# Every test connects from 127.0.0.1 and the daphne processes share this run's Redis
# prefix: a production-sized handshake bucket would throttle the suite itself. The gate's
# throttle tests set their own rates.
os.environ.setdefault("SECURE_WS_HANDSHAKE_RATE", "100000")
# The same for the demo's login, refresh and ticket throttles; tests/test_throttling.py sets
# low rates of its own.
os.environ.setdefault("THROTTLE_TOKEN_RATE", "100000/min")
os.environ.setdefault("THROTTLE_TOKEN_REFRESH_RATE", "100000/min")
os.environ.setdefault("THROTTLE_WS_TICKET_RATE", "100000/min")

from project.settings import *  # noqa: F403
from project.settings import DATABASES, SECURE_WS

# Parallel test runs on one PostgreSQL server must not share a test database.
DATABASES["default"]["TEST"] = {"NAME": f"test_secure_ws_{os.getpid()}"}

# Fast hashing for fixtures; daphne processes started by tests use these settings too.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_WS = {**SECURE_WS, "REQUIRE_TLS": False}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests never run collectstatic: let WhiteNoise find files through the finders instead of
# warning (an error under pytest) that STATIC_ROOT does not exist.
WHITENOISE_AUTOREFRESH = True
