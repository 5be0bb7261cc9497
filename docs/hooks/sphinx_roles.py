"""MkDocs hook: show the Sphinx roles of our docstrings as plain code.

The docstrings use Sphinx cross-reference roles (``:func:`secure_ws.secure_websocket```);
mkdocstrings renders the backticks as code and leaves the role name in front. This hook
drops the role (and a leading ``~``, which in Sphinx means "show the last name only").
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>"
)


def _plain(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_plain, html)
