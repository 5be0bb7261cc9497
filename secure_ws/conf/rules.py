"""The building blocks of the settings table in :mod:`secure_ws.conf`.

A setting is declared once, as a field of ``SecureWSSettings`` whose default is a
:func:`setting` call: the default, the check its value must pass (with the words that say
what it expects), a section and a one-line doc. The defaults, the validation and
``docs/settings.md`` are all read from those fields, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

#: The audit sinks ``AUDIT_SINKS`` may name (:mod:`secure_ws.audit.sinks`).
AUDIT_SINK_NAMES = ("log", "metrics", "database")

Check = Callable[[object], bool]
#: A value check and the words that say what it expects ("a positive int (seconds)").
Rule = tuple[Check, str]


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """One row of the settings table, kept in the field's metadata."""

    default: Any
    check: Check
    expected: str
    section: str
    doc: str
    #: The package extra (``django-secure-ws[extra]``) the setting needs, if any.
    extra: str | None = None
    #: How the docs show the default when its literal would be too long to read.
    shown_default: str | None = None


def setting(
    default: Any,
    rule: Rule,
    section: str,
    doc: str,
    *,
    extra: str | None = None,
    shown_default: str | None = None,
) -> Any:
    """Declare one setting: a dataclass field with its default and its :class:`SettingSpec`.

    Lists are stored as tuples so the frozen settings object stays immutable; the spec keeps
    the list as written, which is what ``DEFAULTS`` and the docs show.
    """
    check, expected = rule
    spec = SettingSpec(default, check, expected, section, doc, extra, shown_default)
    frozen = tuple(default) if isinstance(default, list) else default
    return dataclasses.field(default=frozen, metadata={"secure_ws": spec})


def spec_of(field: dataclasses.Field[Any]) -> SettingSpec:
    """Return the :class:`SettingSpec` of a settings field."""
    spec = field.metadata["secure_ws"]
    assert isinstance(spec, SettingSpec)
    return spec


@dataclasses.dataclass(frozen=True)
class SettingProblem:
    """One thing wrong with ``SECURE_WS``: what, and how to fix it."""

    key: str
    message: str
    hint: str


def find_problems(specs: Mapping[str, SettingSpec], user_settings: object) -> list[SettingProblem]:
    """Return every problem with a ``SECURE_WS`` value checked against ``specs``."""
    if user_settings is None:
        return []
    if not isinstance(user_settings, Mapping):
        return [SettingProblem("SECURE_WS", "SECURE_WS must be a dict.", "Set SECURE_WS = {...}.")]
    problems: list[SettingProblem] = []
    for key, value in user_settings.items():
        spec = specs.get(key)
        if spec is None:
            close = difflib.get_close_matches(str(key).strip().upper(), specs, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "Remove it; see docs/settings.md."
            problems.append(SettingProblem(str(key), f"Unknown SECURE_WS key {key!r}.", hint))
            continue
        if not spec.check(value):
            problems.append(
                SettingProblem(
                    key,
                    f"SECURE_WS[{key!r}] must be {spec.expected}; got {type(value).__name__}.",
                    f"Set SECURE_WS[{key!r}] to {spec.expected}.",
                )
            )
    return problems


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return (is_int(value) or isinstance(value, float)) and value == value  # NaN != NaN


def is_bool(value: object) -> bool:
    return isinstance(value, bool)


def is_str_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def is_sink_list(value: object) -> bool:
    if not isinstance(value, list | tuple) or not is_str_list(value):
        return False
    distinct = len(set(value)) == len(value)
    return distinct and all(v in AUDIT_SINK_NAMES or is_dotted_path(v) for v in value)




def positive_int(value: object) -> bool:
    return is_int(value) and value > 0  # type: ignore[operator]


def non_negative_int(value: object) -> bool:
    return is_int(value) and value >= 0  # type: ignore[operator]


def positive_number(value: object) -> bool:
    return is_number(value) and value > 0  # type: ignore[operator]


def non_negative_number(value: object) -> bool:
    return is_number(value) and value >= 0  # type: ignore[operator]


def finite_non_negative_number(value: object) -> bool:
    return is_number(value) and 0 <= value < float("inf")  # type: ignore[operator]


def optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def one_of(*choices: object) -> Check:
    return lambda value: value in choices


def is_root_path(value: object) -> bool:
    if value == "":
        return True
    return (
        isinstance(value, str)
        and value.startswith("/")
        and not value.endswith("/")
        and value.isprintable()
    )


def is_cidr_list(value: object) -> bool:
    if not is_str_list(value):
        return False
    try:
        for entry in value:  # type: ignore[attr-defined]
            ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def is_non_empty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def is_dotted_path(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(".")
    return len(parts) > 1 and all(part.isidentifier() for part in parts)


def is_long_secret(value: object) -> bool:
    return isinstance(value, str) and len(value) >= 16


BOOL: Rule = (is_bool, "a bool")
POSITIVE: Rule = (positive_int, "a positive int")
SECONDS: Rule = (positive_int, "a positive int (seconds)")
BYTES: Rule = (positive_int, "a positive int (bytes)")
FLOAT_SECONDS: Rule = (positive_number, "a positive number of seconds")
