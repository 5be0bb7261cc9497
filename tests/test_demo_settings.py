"""The demo's settings module, imported as an operator's environment would configure it."""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType

import pytest
from django.core.exceptions import ImproperlyConfigured

pytestmark = pytest.mark.unit

SECRET = "demo-secret-key-" + "k" * 40


def load_demo_settings(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> ModuleType:
    """Import a fresh ``project.settings`` under ``env`` (None unsets a variable)."""
    for name, value in {"SECRET_KEY": SECRET, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "project.settings", raising=False)
    try:
        return import_module("project.settings")
    finally:
        sys.modules.pop("project.settings", None)


def test_demo_refuses_to_start_without_a_jwt_signing_key_outside_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        load_demo_settings(monkeypatch, DEBUG="0", JWT_SIGNING_KEY=None)
    message = str(refused.value)
    assert "\n" not in message
    assert "JWT_SIGNING_KEY" in message
    assert "secrets.token_urlsafe(50)" in message


def test_demo_signs_tokens_with_the_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "operator-jwt-key-" + "q" * 40
    demo = load_demo_settings(monkeypatch, DEBUG="0", JWT_SIGNING_KEY=key)
    assert demo.SIMPLE_JWT["SIGNING_KEY"] == key


def test_debug_demo_gets_a_random_key_never_derived_from_secret_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = load_demo_settings(monkeypatch, DEBUG="1", JWT_SIGNING_KEY=None)
    second = load_demo_settings(monkeypatch, DEBUG="1", JWT_SIGNING_KEY=None)
    keys = [first.SIMPLE_JWT["SIGNING_KEY"], second.SIMPLE_JWT["SIGNING_KEY"]]
    assert keys[0] != keys[1]
    for key in keys:
        assert len(key) >= 32
        assert SECRET not in key
        assert key not in SECRET


def test_demo_throttle_rates_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_demo_settings(
        monkeypatch,
        DEBUG="1",
        THROTTLE_TOKEN_RATE="5/min",
        THROTTLE_TOKEN_REFRESH_RATE=None,
        THROTTLE_WS_TICKET_RATE="100/hour",
    )
    assert demo.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "token": "5/min",
        "token_refresh": "30/min",
        "ws_ticket": "100/hour",
    }


def test_demo_defaults_throttle_logins_to_ten_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_demo_settings(
        monkeypatch,
        DEBUG="1",
        THROTTLE_TOKEN_RATE=None,
        THROTTLE_TOKEN_REFRESH_RATE=None,
        THROTTLE_WS_TICKET_RATE=None,
    )
    assert demo.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] == {
        "token": "10/min",
        "token_refresh": "30/min",
        "ws_ticket": "30/min",
    }


@pytest.mark.parametrize("rate", ["10", "ten/min", "10/fortnight", "-1/min", "10 / min"])
def test_a_malformed_throttle_rate_stops_the_demo(
    monkeypatch: pytest.MonkeyPatch, rate: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match="THROTTLE_TOKEN_RATE"):
        load_demo_settings(monkeypatch, DEBUG="1", THROTTLE_TOKEN_RATE=rate)


def test_throttles_count_in_the_same_redis_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = load_demo_settings(
        monkeypatch, DEBUG="1", REDIS_URL="redis://127.0.0.1:6379/3", SECURE_WS_KEY_PREFIX="site"
    )
    cache = demo.CACHES["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://127.0.0.1:6379/3"
    assert cache["KEY_PREFIX"] == "site:cache"


def test_throttles_count_in_process_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_demo_settings(monkeypatch, DEBUG="1", REDIS_URL=None)
    assert demo.CACHES["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
