"""Test settings with Django-session WebSocket auth on: the CSWSH test's worst case.

Cookies are ambient, so a page on another origin makes the browser send them with its
WebSocket handshake; only the origin check stands between that page and the victim's
account. Turning session auth on proves the check holds where it matters.
"""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "ALLOW_SESSION_AUTH": True}
