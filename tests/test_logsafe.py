"""Client text is escaped before any log line, audit row or admin page can show it."""

from __future__ import annotations

import pytest

from secure_ws.connection import ConnectionInfo, get_connection_info
from secure_ws.logsafe import escape_for_log

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("/ws/files/\nFORGED", "/ws/files/\\x0aFORGED"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nul\x00tab\tdel\x7f", "nul\\x00tab\\x09del\\x7f"),
        ("c1 \x85 next-line \x9b csi", "c1 \\x85 next-line \\x9b csi"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\u2066isolate\u2069 \u200e\u200f\u061c", "\\u2066isolate\\u2069 \\u200e\\u200f\\u061c"),
    ],
)
def test_control_line_and_bidi_characters_are_escaped(raw: str, escaped: str) -> None:
    assert escape_for_log(raw) == escaped


@pytest.mark.parametrize(
    "text", ["/ws/files/", "Mozilla/5.0 (X11; Linux x86_64)", "café ünïcode 日本語", ""]
)
def test_printable_text_is_kept_as_is(text: str) -> None:
    assert escape_for_log(text) == text


def test_escaping_twice_changes_nothing() -> None:
    once = escape_for_log("x\n\x1b\u202e\\x0a")
    assert escape_for_log(once) == once
    assert "\n" not in once
    assert "\x1b" not in once


def test_connection_info_escapes_client_text_wherever_it_is_set() -> None:
    info = get_connection_info({"path": "/ws/\r\nFORGED"})
    assert info.path == "/ws/\\x0d\\x0aFORGED"
    info.user_agent = "ua\x1b[2J"
    info.host = "h\x00st"
    info.origin = "o\u2028"
    info.username = "bob\u202e"
    assert (info.user_agent, info.host, info.origin, info.username) == (
        "ua\\x1b[2J",
        "h\\x00st",
        "o\\u2028",
        "bob\\u202e",
    )
    assert ConnectionInfo(client_ip="::1\n").client_ip == "::1\\x0a"
    info.origin = None  # not text: left alone
    assert info.origin is None
