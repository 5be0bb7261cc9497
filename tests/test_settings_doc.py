"""docs/settings.md documents every SECURE_WS key, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from secure_ws.conf import DEFAULTS

SETTINGS_DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", re.MULTILINE)


def documented_keys() -> set[str]:
    return set(_ROW.findall(SETTINGS_DOC.read_text(encoding="utf-8")))


def test_every_settings_key_is_documented() -> None:
    missing = sorted(set(DEFAULTS) - documented_keys())
    assert not missing, f"add these SECURE_WS keys to docs/settings.md: {missing}"


def test_docs_document_no_unknown_keys() -> None:
    unknown = sorted(documented_keys() - set(DEFAULTS))
    assert not unknown, f"docs/settings.md documents keys that do not exist: {unknown}"
