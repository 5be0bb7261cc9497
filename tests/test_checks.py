"""secure_ws system checks: each fires on its misconfiguration and stays quiet otherwise."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import modify_settings, override_settings

from secure_ws import checks
from secure_ws.headers import csp_middleware, csp_settings, uses_builtin_csp

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "j" * 48
MIN_KEY_CHARS = checks.MIN_HMAC_KEY_BYTES


def ids(check: Callable[..., list[Any]]) -> list[str]:
    return [message.id for message in check(None)]


def secure_ws(**overrides: Any) -> override_settings:
    return override_settings(SECURE_WS={**settings.SECURE_WS, **overrides})


def simple_jwt(**overrides: Any) -> override_settings:
    return override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, **overrides})


def test_every_check_is_registered() -> None:
    from django.core.checks.registry import registry

    registered = registry.get_checks(include_deployment_checks=True)
    ours = {
        check.__name__ for check in registered if check.__module__.startswith("secure_ws.checks.")
    }
    assert ours == {
        name
        for name in dir(checks)
        if name.startswith("check_") and callable(getattr(checks, name))
    }


def test_messages_all_carry_ids_and_hints() -> None:
    with (
        secure_ws(
            ALLOWED_ORIGINS=["*", "http://x.example"],
            CHECK_ORIGIN=False,
            ALLOW_SESSION_AUTH=True,
            REQUIRE_AUTHENTICATION=False,
        ),
        override_settings(ASGI_APPLICATION="tests.checks_asgi.unwrapped"),
    ):
        messages = [
            m
            for m in run_checks(include_deployment_checks=True)
            if str(m.id).startswith("secure_ws.")
        ]
    assert len(messages) >= 6
    for message in messages:
        assert message.hint


# E001 ---------------------------------------------------------------------------------


def test_invalid_value_and_misspelt_key_are_errors_with_did_you_mean() -> None:
    with override_settings(SECURE_WS={"MAX_MESSAGE_BYTES": "big", "ALOWED_ORIGINS ": []}):
        messages = checks.check_settings_values(None)
    assert [m.id for m in messages] == ["secure_ws.E001", "secure_ws.E001"]
    assert any("Did you mean 'ALLOWED_ORIGINS'?" in (m.hint or "") for m in messages)


def test_valid_settings_pass_value_check() -> None:
    assert ids(checks.check_settings_values) == []


def test_invalid_settings_do_not_crash_the_other_checks() -> None:
    with override_settings(SECURE_WS={"MAX_MESSAGE_BYTES": "big"}):
        messages = run_checks(include_deployment_checks=True)
    assert "secure_ws.E001" in {m.id for m in messages}


# E002 / W003 / W004 -------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["*", "https://*", "null"])
def test_wildcard_origin_is_an_error_when_not_debug(entry: str) -> None:
    with secure_ws(ALLOWED_ORIGINS=["https://app.example.com", entry]):
        assert ids(checks.check_origin_policy) == ["secure_ws.E002"]


def test_plain_http_origin_is_a_warning_when_not_debug() -> None:
    with secure_ws(ALLOWED_ORIGINS=["http://app.example.com"]):
        assert ids(checks.check_origin_policy) == ["secure_ws.W003"]


def test_https_and_subdomain_origins_are_quiet() -> None:
    with secure_ws(ALLOWED_ORIGINS=["https://app.example.com", "https://*.example.com"]):
        assert ids(checks.check_origin_policy) == []


def test_origin_policy_is_quiet_in_debug() -> None:
    with secure_ws(ALLOWED_ORIGINS=["*", "http://x.example"]), override_settings(DEBUG=True):
        assert ids(checks.check_origin_policy) == []


def test_unparsable_origin_entry_is_reported() -> None:
    with secure_ws(ALLOWED_ORIGINS=["https://app.example.com/path", "https://ok.example"]):
        messages = checks.check_origin_entries(None)
    assert [m.id for m in messages] == ["secure_ws.W004"]
    assert "/path" in messages[0].msg


def test_parsable_origin_entries_are_quiet() -> None:
    with secure_ws(ALLOWED_ORIGINS=["https://app.example.com/", "http://127.0.0.1:8000"]):
        assert ids(checks.check_origin_entries) == []


# E010 / W011 --------------------------------------------------------------------------


def test_channels_own_stack_is_reported_as_unprotected() -> None:
    with override_settings(ASGI_APPLICATION="tests.checks_asgi.unwrapped"):
        messages = checks.check_websocket_routes(None)
    assert [m.id for m in messages] == ["secure_ws.E010"]
    assert "/ws/chat/" in messages[0].msg


def test_only_the_raw_route_next_to_a_wrapped_one_is_reported() -> None:
    with override_settings(ASGI_APPLICATION="tests.checks_asgi.mixed"):
        (message,) = checks.check_websocket_routes(None)
    assert "/ws/raw/" in message.msg
    assert "/ws/safe/" not in message.msg


def test_origin_step_switched_off_on_the_instance_is_unprotected() -> None:
    with override_settings(ASGI_APPLICATION="tests.checks_asgi.origin_off"):
        assert ids(checks.check_websocket_routes) == ["secure_ws.E010"]


@pytest.mark.parametrize(
    "application",
    ["project.asgi.application", "tests.checks_asgi.hand_built", "tests.checks_asgi.http_only"],
)
def test_gated_routes_are_quiet(application: str) -> None:
    with override_settings(ASGI_APPLICATION=application):
        assert ids(checks.check_websocket_routes) == []


def test_unimportable_asgi_application_is_a_warning_not_a_crash() -> None:
    with override_settings(ASGI_APPLICATION="tests.checks_asgi.broken"):
        messages = checks.check_websocket_routes(None)
    assert [m.id for m in messages] == ["secure_ws.W011"]
    assert "RuntimeError" in messages[0].msg


# E020 / W021-W024 ---------------------------------------------------------------------


@pytest.mark.parametrize("credential", ["ALLOW_SESSION_AUTH", "ALLOW_QUERY_STRING_TOKEN"])
def test_ambient_credentials_without_origin_check_are_an_error(credential: str) -> None:
    with secure_ws(**{credential: True, "CHECK_ORIGIN": False}):
        messages = checks.check_ambient_credentials(None)
    assert [m.id for m in messages] == ["secure_ws.E020"]
    assert credential in messages[0].msg


def test_ambient_credentials_with_origin_check_are_quiet() -> None:
    with secure_ws(ALLOW_SESSION_AUTH=True, CHECK_ORIGIN=True):
        assert ids(checks.check_ambient_credentials) == []
    with secure_ws(CHECK_ORIGIN=False):
        assert ids(checks.check_ambient_credentials) == []


def test_every_gate_opt_out_is_a_deploy_warning() -> None:
    with secure_ws(
        ALLOW_QUERY_STRING_TOKEN=True,
        CHECK_ORIGIN=False,
        REQUIRE_TLS=False,
        REQUIRE_AUTHENTICATION=False,
    ):
        assert ids(checks.check_weakened_gate) == [
            "secure_ws.W021",
            "secure_ws.W022",
            "secure_ws.W023",
            "secure_ws.W024",
        ]


def test_safe_gate_defaults_are_quiet() -> None:
    with override_settings(SECURE_WS={}):
        assert ids(checks.check_weakened_gate) == []


def test_tls_off_is_quiet_in_debug() -> None:
    with secure_ws(REQUIRE_TLS=False), override_settings(DEBUG=True):
        assert ids(checks.check_weakened_gate) == []


def test_trusting_a_proxy_root_path_is_a_deploy_warning() -> None:
    with override_settings(SECURE_WS={"TRUST_PROXY_ROOT_PATH": True}):
        assert ids(checks.check_weakened_gate) == ["secure_ws.W025"]


def test_a_configured_root_path_alone_is_quiet() -> None:
    with override_settings(SECURE_WS={"ROOT_PATH": "/app", "TRUST_PROXY_ROOT_PATH": False}):
        assert ids(checks.check_weakened_gate) == []


# E030 / W031 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layers", [{}, {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}]
)
def test_in_memory_or_missing_layer_is_an_error(layers: dict[str, Any]) -> None:
    with override_settings(CHANNEL_LAYERS=layers):
        assert ids(checks.check_channel_layer) == ["secure_ws.E030"]


def test_in_memory_layer_is_quiet_in_debug() -> None:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers, DEBUG=True):
        assert ids(checks.check_channel_layer) == []


@pytest.mark.parametrize(
    "host",
    [
        "redis://cache.internal:6379/0",
        {"address": "redis://:pw@10.0.0.5:6379/0"},
        ("10.0.0.5", 6379),
    ],
)
def test_plain_redis_to_a_remote_host_is_a_warning(host: Any) -> None:
    layers = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host]}}
    }
    with override_settings(CHANNEL_LAYERS=layers), secure_ws(REDIS_URL=None):
        messages = checks.check_channel_layer(None)
    assert [m.id for m in messages] == ["secure_ws.W031"]
    assert "pw" not in messages[0].msg


def test_plain_redis_in_secure_ws_redis_url_is_a_warning() -> None:
    with secure_ws(REDIS_URL="redis://cache.internal:6379/1"):
        assert ids(checks.check_channel_layer) == ["secure_ws.W031"]


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost:6379/0",
        "redis://[::1]:6379/0",
        "rediss://:pw@cache.internal:6380/0",
        "unix:///run/redis.sock",
    ],
)
def test_tls_loopback_and_unix_redis_are_quiet(url: str) -> None:
    layers = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    with override_settings(CHANNEL_LAYERS=layers), secure_ws(REDIS_URL=url):
        assert ids(checks.check_channel_layer) == []


# E040 / E041 / W042 / E043 ------------------------------------------------------------


def test_short_hmac_key_is_an_error() -> None:
    with simple_jwt(SIGNING_KEY="too-short-key"):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E040"]


def test_signing_key_equal_to_secret_key_is_an_error() -> None:
    with simple_jwt(SIGNING_KEY=settings.SECRET_KEY):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E041"]


def test_short_key_of_multibyte_characters_is_an_error() -> None:
    """16 two-byte characters are 32 bytes: the length that counts is in characters."""
    with simple_jwt(SIGNING_KEY="é" * 16):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E040"]


def test_long_key_of_multibyte_characters_is_quiet() -> None:
    with simple_jwt(SIGNING_KEY="é" * MIN_KEY_CHARS):
        assert ids(checks.check_jwt_signing_key) == []


def test_signing_key_containing_the_secret_key_is_an_error() -> None:
    """The demo's old fallback ``SECRET_KEY + "-jwt"``: knowing SECRET_KEY forges tokens."""
    with simple_jwt(SIGNING_KEY=settings.SECRET_KEY + "-jwt"):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E041"]


def test_signing_key_inside_the_secret_key_is_an_error() -> None:
    secret = secrets.token_urlsafe(60)
    with override_settings(SECRET_KEY=secret), simple_jwt(SIGNING_KEY=secret[10:60]):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E041"]


def test_signing_key_derived_from_a_fallback_secret_key_is_an_error() -> None:
    old_secret = secrets.token_urlsafe(50)
    with (
        override_settings(SECRET_KEY_FALLBACKS=[old_secret]),
        simple_jwt(SIGNING_KEY=f"jwt-{old_secret}"),
    ):
        assert ids(checks.check_jwt_signing_key) == ["secure_ws.E041"]


def test_signing_key_independent_of_every_secret_key_is_quiet() -> None:
    with (
        override_settings(
            SECRET_KEY=secrets.token_urlsafe(50), SECRET_KEY_FALLBACKS=[secrets.token_urlsafe(50)]
        ),
        simple_jwt(SIGNING_KEY=secrets.token_urlsafe(48)),
    ):
        assert ids(checks.check_jwt_signing_key) == []


def test_signing_key_messages_never_carry_either_key() -> None:
    key = settings.SECRET_KEY + "-jwt"
    with simple_jwt(SIGNING_KEY=key):
        (message,) = checks.check_jwt_signing_key(None)
    text = f"{message.msg} {message.hint}"
    assert settings.SECRET_KEY not in text
    assert "-jwt" not in text


def test_own_long_signing_key_is_quiet() -> None:
    with simple_jwt(SIGNING_KEY=STRONG_KEY):
        assert ids(checks.check_jwt_signing_key) == []


def test_signing_key_checks_are_quiet_in_debug() -> None:
    with simple_jwt(SIGNING_KEY="short"), override_settings(DEBUG=True):
        assert ids(checks.check_jwt_signing_key) == []


def test_access_lifetime_above_the_websocket_maximum_is_a_warning() -> None:
    with simple_jwt(ACCESS_TOKEN_LIFETIME=timedelta(hours=1)), secure_ws(MAX_TOKEN_LIFETIME=900):
        assert ids(checks.check_token_lifetime) == ["secure_ws.W042"]


def test_access_lifetime_within_the_maximum_is_quiet() -> None:
    with simple_jwt(ACCESS_TOKEN_LIFETIME=timedelta(minutes=15)), secure_ws(MAX_TOKEN_LIFETIME=900):
        assert ids(checks.check_token_lifetime) == []


def test_password_change_not_revoking_tokens_is_a_deploy_warning() -> None:
    with simple_jwt(CHECK_REVOKE_TOKEN=False):
        assert ids(checks.check_password_change_revokes_tokens) == ["secure_ws.W044"]
    with simple_jwt(
        TOKEN_REFRESH_SERIALIZER="rest_framework_simplejwt.serializers.TokenRefreshSerializer"
    ):
        assert ids(checks.check_password_change_revokes_tokens) == ["secure_ws.W045"]


def test_password_change_revoking_tokens_is_quiet() -> None:
    # The demo's settings: CHECK_REVOKE_TOKEN on, the revoking refresh serializer.
    assert ids(checks.check_password_change_revokes_tokens) == []


def test_revocation_without_blacklist_app_is_an_error() -> None:
    with (
        modify_settings(INSTALLED_APPS={"remove": ["rest_framework_simplejwt.token_blacklist"]}),
        secure_ws(REVOKE_ON_LOGOUT=True),
    ):
        assert ids(checks.check_blacklist_installed) == ["secure_ws.E043"]


def test_revocation_with_blacklist_app_or_turned_off_is_quiet() -> None:
    with secure_ws(REVOKE_ON_LOGOUT=True):
        assert ids(checks.check_blacklist_installed) == []
    with (
        modify_settings(INSTALLED_APPS={"remove": ["rest_framework_simplejwt.token_blacklist"]}),
        secure_ws(REVOKE_ON_LOGOUT=False),
    ):
        assert ids(checks.check_blacklist_installed) == []


# W050 / W051 --------------------------------------------------------------------------


def test_message_limit_above_the_server_limit_is_a_warning() -> None:
    with secure_ws(MAX_MESSAGE_BYTES=2_000_000, SERVER_MAX_MESSAGE_BYTES=1_048_576):
        assert ids(checks.check_message_size) == ["secure_ws.W050"]


def test_message_limit_within_the_server_limit_is_quiet() -> None:
    with secure_ws(MAX_MESSAGE_BYTES=65536, SERVER_MAX_MESSAGE_BYTES=131072):
        assert ids(checks.check_message_size) == []


def test_undeclared_server_limit_is_a_deploy_warning() -> None:
    with secure_ws(SERVER_MAX_MESSAGE_BYTES=None):
        assert ids(checks.check_server_limits_declared) == ["secure_ws.W051"]


def test_declared_server_limit_is_quiet() -> None:
    with secure_ws(SERVER_MAX_MESSAGE_BYTES=131072):
        assert ids(checks.check_server_limits_declared) == []


# W060 / W061 --------------------------------------------------------------------------


def _policy_for(secure_ws_value: dict[str, Any], connect_src: list[str] | None = None) -> dict:
    ((name, value),) = csp_settings(secure_ws_value).items()
    if connect_src is not None:
        directives = value if uses_builtin_csp() else value["DIRECTIVES"]
        directives["connect-src"] = connect_src
    return {name: value}


def test_missing_csp_middleware_is_a_warning() -> None:
    with modify_settings(MIDDLEWARE={"remove": [csp_middleware()]}):
        assert ids(checks.check_content_security_policy) == ["secure_ws.W060"]


def test_csp_without_the_websocket_origins_is_a_warning() -> None:
    origins = {**settings.SECURE_WS, "ALLOWED_ORIGINS": ["https://app.example.com"]}
    with override_settings(SECURE_WS=origins, **_policy_for(origins, ["'self'"])):
        messages = checks.check_content_security_policy(None)
    assert [m.id for m in messages] == ["secure_ws.W061"]
    assert "wss://app.example.com" in messages[0].msg


def test_csp_built_by_the_helper_is_quiet() -> None:
    origins = {
        **settings.SECURE_WS,
        "ALLOWED_ORIGINS": ["https://app.example.com", "https://*.example.com"],
    }
    with override_settings(SECURE_WS=origins, **_policy_for(origins)):
        assert ids(checks.check_content_security_policy) == []


def test_scheme_source_counts_as_covering() -> None:
    origins = {**settings.SECURE_WS, "ALLOWED_ORIGINS": ["https://app.example.com"]}
    with override_settings(SECURE_WS=origins, **_policy_for(origins, ["'self'", "wss:"])):
        assert ids(checks.check_content_security_policy) == []


# The demo's production configuration ----------------------------------------------------


def test_demo_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    """``manage.py check --deploy`` on the demo as an operator would run it: no message."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_WS_", "SECURE_", "DJANGO_", "DEBUG", "ALLOWED_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "DEBUG": "0",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ALLOWED_HOSTS": "files.example.com",
            "SECURE_WS_ALLOWED_ORIGINS": "https://files.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "PYTHONWARNINGS": "ignore",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_demo_without_redis_fails_check_deploy(tmp_path: Path) -> None:
    """The same run without REDIS_URL: the in-memory layer is refused for production."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_WS_", "SECURE_", "DJANGO_", "DEBUG", "ALLOWED_", "REDIS"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "DEBUG": "0",
            "SECURE_WS_ALLOWED_ORIGINS": "https://files.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "PYTHONWARNINGS": "ignore",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "secure_ws.E030" in result.stdout + result.stderr
