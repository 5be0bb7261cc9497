"""Origin checks: missing, ``null``, foreign and look-alike origins are refused (CSWSH)."""

from __future__ import annotations

import urllib.parse
import urllib.request

from secure_ws.probe.checks_common import (
    ORIGIN,
    Result,
    expect_refused,
)
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import check
from secure_ws.probe.session import ProbeSession

# ---------------------------------------------------------------------- origin


def _origin_variants(expected: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(expected)
    host = parts.hostname or "localhost"
    port = parts.port
    hostport = f"{host}:{port}" if port else host
    other_scheme = "https" if parts.scheme == "http" else "http"
    other_port = (port or (443 if parts.scheme == "https" else 80)) + 1
    return {
        "suffix": f"{parts.scheme}://{host}.evil-probe.example" + (f":{port}" if port else ""),
        "prefix": f"{parts.scheme}://evil{hostport}",
        "userinfo": f"{parts.scheme}://{hostport}@evil-probe.example",
        "scheme": f"{other_scheme}://{hostport}",
        "port": f"{parts.scheme}://{host}:{other_port}",
    }


async def _hostile_origin(session: ProbeSession, origin: str | None, what: str) -> Result:
    outcome = await session.attempt(origin=origin)
    return expect_refused(outcome, what)


@check(
    "origin.missing",
    "origin",
    "Browser-style credentials without an Origin header are refused",
    "A handshake with browser credentials but no Origin cannot be told apart from CSWSH.",
    ORIGIN,
)
async def origin_missing(session: ProbeSession) -> Result:
    return await _hostile_origin(session, None, "no Origin")


@check(
    "origin.null",
    "origin",
    "Origin: null is refused",
    "Sandboxed iframes and file: pages send null; allowing it lets any page in.",
    ORIGIN,
)
async def origin_null(session: ProbeSession) -> Result:
    return await _hostile_origin(session, "null", "Origin: null")


@check(
    "origin.foreign",
    "origin",
    "Foreign origins (and every --hostile-origin) are refused",
    "Cross-site WebSocket hijacking: another site's page must not open a socket as the user.",
    ORIGIN,
)
async def origin_foreign(session: ProbeSession) -> Result:
    origins = ["https://evil-probe.example", *session.config.hostile_origins]
    for origin in origins:
        verdict, evidence = await _hostile_origin(session, origin, f"Origin {origin}")
        if verdict is not Verdict.PASS:
            return verdict, evidence
    return Verdict.PASS, f"{len(origins)} foreign origin(s) refused"


def _variant_check(name: str, title: str, rationale: str) -> None:
    async def run(session: ProbeSession) -> Result:
        origin = _origin_variants(session.expected_origin)[name]
        return await _hostile_origin(session, origin, f"Origin {origin}")

    run.__name__ = f"origin_{name}"
    check(f"origin.{name}", "origin", title, rationale, ORIGIN)(run)


_variant_check(
    "suffix",
    "An origin with the expected host as a prefix of its name is refused",
    "good.example.evil.net passes a naive startswith() check.",
)
_variant_check(
    "prefix",
    "An origin ending with the expected host is refused",
    "evilgood.example passes a naive endswith() check.",
)
_variant_check(
    "userinfo",
    "An origin with userinfo (good@evil) is refused",
    "https://good.example@evil.net contains the expected host but is evil.net.",
)
_variant_check(
    "scheme",
    "The expected host under the other scheme is refused",
    "An http:// page can be injected by a network attacker; it is not the https site.",
)
_variant_check(
    "port",
    "The expected host on another port is refused",
    "Another port is another origin, often a less trusted service.",
)
