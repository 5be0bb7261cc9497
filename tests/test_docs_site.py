"""The documentation site builds strictly, and its reference pages follow the code.

The strict build fails on a broken link or anchor, a page missing from the nav, a missing
snippet or an API reference that does not resolve. It writes only into a temporary
directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from project.routing import websocket_urlpatterns
from secure_ws.codes import REFUSAL_CLOSE_CODES, Reason
from secure_ws.consumer.protocol import build_asyncapi, dumps, endpoints_from_urlpatterns

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_CHECK_ID_IN_CODE = re.compile(r"""id=["'](secure_ws\.[EW]\d{3})["']""")
_CHECK_ROW = re.compile(r"^\| `(secure_ws\.[EW]\d{3})` \|", re.MULTILINE)
_REASON_ROW = re.compile(r"^\| `([a-z_]+)` \| ([^|]+?) \| ([^|]+?) \|", re.MULTILINE)


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    config = ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(
        # Not --quiet: it hides the warnings that --strict counts, and the build passes.
        [sys.executable, "-m", "mkdocs", "build", "--strict", *config],
        cwd=tmp_path,  # the config must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert result.returncode == 0, "\n".join(warnings) or result.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "Wrap a WebSocket application" in api  # secure_websocket's docstring
    assert ":func:" not in api
    assert ":class:" not in api


def test_every_system_check_id_is_documented() -> None:
    in_code = set()
    for source in (ROOT / "secure_ws").rglob("*.py"):
        in_code |= set(_CHECK_ID_IN_CODE.findall(source.read_text(encoding="utf-8")))
    documented = _CHECK_ROW.findall((DOCS / "reference" / "checks.md").read_text("utf-8"))
    assert len(documented) == len(set(documented)), "a check ID is listed twice"
    assert sorted(in_code - set(documented)) == [], "add these to docs/reference/checks.md"
    assert sorted(set(documented) - in_code) == [], "docs/reference/checks.md lists old IDs"


def test_every_reason_code_is_documented_with_its_close_code() -> None:
    page = (DOCS / "reference" / "close-codes.md").read_text(encoding="utf-8")
    rows = {reason: (when, code) for reason, when, code in _REASON_ROW.findall(page)}
    assert set(rows) == {reason.value for reason in Reason}
    for reason, close_code in REFUSAL_CLOSE_CODES.items():
        assert rows[reason.value] == ("handshake", str(int(close_code))), reason
    handshake_rows = {reason for reason, (when, _) in rows.items() if when == "handshake"}
    assert handshake_rows == {reason.value for reason in REFUSAL_CLOSE_CODES}


def test_the_asyncapi_document_in_the_docs_is_current() -> None:
    document = build_asyncapi(endpoints_from_urlpatterns(websocket_urlpatterns))
    committed = (DOCS / "reference" / "asyncapi.json").read_text(encoding="utf-8")
    assert committed == dumps(document), (
        "docs/reference/asyncapi.json drifted: regenerate it with "
        "`python manage.py ws_schema > docs/reference/asyncapi.json`"
    )


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "howto").glob("*.md")))
def test_how_to_pages_stay_short(page: str) -> None:
    lines = (DOCS / "howto" / page).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120, f"docs/howto/{page} is {len(lines)} lines; link to the details"
