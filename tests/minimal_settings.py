"""The smallest project that uses secure_ws: no ``secure_ws.contrib.files``, no demo apps.

``tests/test_contrib_optional.py`` loads it in a subprocess to show that the core works
without the optional sub-app.
"""

SECRET_KEY = "minimal-settings-" + "k" * 40
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "channels",
    "secure_ws",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
USE_TZ = True
SECURE_WS = {"ALLOWED_ORIGINS": ["https://example.com"]}
