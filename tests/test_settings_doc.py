"""docs/settings.md is generated from the settings table, and the committed page is current."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from secure_ws.conf import DEFAULTS, SecureWSSettings, setting_specs, validate
from secure_ws.conf import doc as conf_doc
from secure_ws.conf.rules import SettingSpec


def test_committed_settings_page_is_the_generated_one() -> None:
    page = conf_doc.render(conf_doc.TEMPLATE.read_text(encoding="utf-8"))
    committed = conf_doc.OUTPUT.read_text(encoding="utf-8")
    assert committed == page, "docs/settings.md is stale: run scripts/gen-settings-doc"


def test_every_setting_has_a_row_and_every_row_a_setting() -> None:
    tables = conf_doc.render_tables()
    rows = {line.split("`")[1] for line in tables.splitlines() if line.startswith("| `")}
    assert rows == set(DEFAULTS)


def test_every_default_passes_its_own_check() -> None:
    assert validate(DEFAULTS) == []


def test_every_upper_case_field_of_the_settings_object_is_a_table_row() -> None:
    names = [f.name for f in dataclasses.fields(SecureWSSettings) if f.name.isupper()]
    assert names == list(setting_specs())
    derived = [f.name for f in dataclasses.fields(SecureWSSettings) if not f.name.isupper()]
    assert derived == ["redis_follows_channel_layer"]


def test_a_doc_that_would_break_the_table_is_refused() -> None:
    spec = SettingSpec(1, bool, "a bool", "Shared state", "a | b")
    with pytest.raises(ValueError, match="table cell"):
        conf_doc._row("BROKEN", spec)


def test_check_mode_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("# old\n", encoding="utf-8")
    monkeypatch.setattr(conf_doc, "OUTPUT", stale)
    assert conf_doc.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "# old\n"


def test_a_setting_that_needs_an_extra_says_which() -> None:
    spec = SettingSpec(False, bool, "a bool", "Audit and metrics", "Export metrics.", "metrics")
    row = conf_doc._row("METRICS_X", spec)
    assert row.endswith("Needs the extra: `pip install django-secure-ws[metrics]`. |")
