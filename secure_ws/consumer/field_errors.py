"""Field errors a client may see: ``loc``/``msg``/``type`` only, never its own input.

A pydantic message can quote the value that failed (markup, a token pasted in the wrong
field); an ``invalid_message`` reply carries fixed texts for those error types, pydantic's
text only for types whose message names limits and expected values, and no key a client
chose that is not a plain identifier.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

__all__ = ["MAX_REPORTED_ERRORS", "field_errors"]

#: At most this many field errors are returned in one ``invalid_message`` reply.
MAX_REPORTED_ERRORS = 10

_SAFE_LOC_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

#: Messages for error types whose pydantic text could quote the input.
_FIXED_MESSAGES = {
    "uuid_parsing": "Input should be a valid UUID",
    "uuid_type": "Input should be a valid UUID string",
    "union_tag_invalid": "Unknown message type",
    "union_tag_not_found": "Field required",
}
#: Error types whose pydantic message only names limits and expected values.
_SAFE_MESSAGE_TYPES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "dict_type",
        "list_type",
        "model_type",
        "model_attributes_type",
        "string_too_long",
        "string_too_short",
        "too_long",
        "too_short",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "literal_error",
        "finite_number",
        "string_pattern_mismatch",
        "int_from_float",
        "value_error",
        "none_required",
        "int_parsing_size",
    }
)
_MAX_ERROR_MESSAGE_CHARS = 200


def _safe_loc(loc: tuple[int | str, ...]) -> list[str | int]:
    # A dict key in ``loc`` (e.g. an extra key) is client input: keep identifiers only.
    return [
        part if isinstance(part, int) or _SAFE_LOC_PART.match(part) else "<key>" for part in loc
    ]


def field_errors(exc: ValidationError, *, drop_tag: bool = True) -> list[dict[str, object]]:
    """Turn a pydantic error into ``loc``/``msg``/``type`` dicts that never echo input."""
    errors: list[dict[str, object]] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        kind = error["type"]
        loc = tuple(error["loc"])
        if drop_tag and loc:
            loc = loc[1:]  # the discriminated union prefixes the matched type name
        if kind in _FIXED_MESSAGES:
            msg = _FIXED_MESSAGES[kind]
        elif kind in _SAFE_MESSAGE_TYPES:
            msg = error["msg"][:_MAX_ERROR_MESSAGE_CHARS]
        else:
            msg = "Invalid value"
        errors.append({"loc": _safe_loc(loc), "msg": msg, "type": kind})
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
    return errors
