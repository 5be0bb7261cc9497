"""Make client-controlled text safe to write into a log line, an audit row or the admin.

A handshake path is percent-decoded by the server (``/ws/files/%0aFORGED`` arrives with a
real line feed), and header values may carry any byte but CR/LF. Written raw, such a value
forges a log line (CWE-117), moves the terminal cursor with ESC sequences when an operator
``tail``\\ s the log, or reverses the text an operator reads in the admin with bidi
overrides (CVE-2021-42574, "Trojan Source"). :func:`escape_for_log` replaces every such
character with a visible ``\\xNN`` / ``\\uNNNN`` escape.

It is applied once, where client values enter :class:`~secure_ws.connection.ConnectionInfo`
and where refusal and security-event details are written, so every sink (log, audit
table, admin, metrics) gets the escaped value without each call site remembering to.
"""

from __future__ import annotations

import re

#: C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the
#: bidirectional formatting characters (marks, embeddings, overrides, isolates).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_for_log(value: str) -> str:
    """Return ``value`` with control, line-separator and bidi characters escaped.

    Printable text, including non-ASCII letters, is kept as is. The result holds no
    character the pattern matches, so escaping twice changes nothing (a value escaped when
    it entered ``ConnectionInfo`` can safely pass through a detail formatter again).
    A backslash is not escaped: a client that sends the four characters ``\\x0a`` gets
    them logged verbatim, on one line, which forges nothing.
    """
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape_char, value)
