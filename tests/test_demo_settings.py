"""The demo's settings module, imported as an operator's environment would configure it."""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType

import pytest
from django.core.exceptions import ImproperlyConfigured

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
