"""Test settings for the flood test: production limits, and loopback as a trusted proxy.

Every test client connects from 127.0.0.1; trusting it as a proxy lets each client carry
its own ``X-Forwarded-For`` address (documentation ranges, never contacted), so that the
per-IP limits see abusers and well-behaved clients as the different hosts they would be.
The suite's settings raise the handshake rate so that tests do not throttle each other;
this test needs the shipped defaults back.
"""

from secure_ws.conf import DEFAULTS
from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {
    **SECURE_WS,
    "TRUSTED_PROXIES": ["127.0.0.1/32"],
    "HANDSHAKE_RATE": DEFAULTS["HANDSHAKE_RATE"],
    "HANDSHAKE_BURST": DEFAULTS["HANDSHAKE_BURST"],
}
