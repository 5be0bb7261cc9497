"""The SECURE_WS settings object: defaults, validation and reload."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from secure_ws.conf import DEFAULTS, build_settings, get_settings, validate

pytestmark = pytest.mark.unit


def test_defaults_build_a_valid_settings_object() -> None:
    built = build_settings({})
    assert built.MAX_MESSAGE_BYTES == DEFAULTS["MAX_MESSAGE_BYTES"]
    assert built.ALLOW_QUERY_STRING_TOKEN is False


def test_unknown_key_with_trailing_space_gets_a_did_you_mean() -> None:
    problems = validate({"MAX_MESSAGE_BYTES ": 10})
    assert len(problems) == 1
    assert "Did you mean 'MAX_MESSAGE_BYTES'" in problems[0].hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MAX_MESSAGE_BYTES", "64k"),
        ("MAX_MESSAGE_BYTES", True),
        ("MESSAGE_RATE", float("nan")),
        ("REFUSAL_MODE", "maybe"),
        ("TRUSTED_PROXIES", ["not-a-network"]),
        ("REDIS_URL", "http://127.0.0.1"),
        ("SUBSCRIPTION_RECHECK_INTERVAL", -1),
        ("ROOT_PATH", "app/"),
        ("AUDIT_SINKS", ["database", "syslog"]),
        ("AUDIT_SINKS", ["log", "log"]),
        ("AUDIT_SINKS", "log"),
    ],
)
def test_wrong_values_are_reported(key: str, value: object) -> None:
    assert [p.key for p in validate({key: value})] == [key]
    with pytest.raises(ImproperlyConfigured):
        build_settings({key: value})


def test_every_problem_is_reported_at_once() -> None:
    assert len(validate({"NOPE": 1, "MAX_JSON_DEPTH": 0})) == 2


#: Values tried in turn; each key takes the first one it accepts that is not its default.
CANDIDATE_VALUES: list[object] = [
    True,
    False,
    7,
    3,
    2.5,
    "close",
    "project.filebox.policy.Other",
    "redis://127.0.0.1:6379/1",
    ["10.0.0.0/8"],
    ["https://a.example"],
    "other_prefix",
    "/app",
    ["metrics"],
]


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_follows_override_settings(key: str) -> None:
    default = DEFAULTS[key]
    value = next(v for v in CANDIDATE_VALUES if not validate({key: v}) and v != default)
    expected = tuple(value) if isinstance(value, list) else value
    with override_settings(SECURE_WS={key: value}):
        assert getattr(get_settings(), key) == expected
    assert getattr(get_settings(), key) != expected
