"""Transport, handshake and close-hygiene checks: TLS, HSTS, subprotocol, banner, refusals."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import urllib.request

from secure_ws.probe.checks_common import (
    A05,
    TRANSPORT,
    Result,
)
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import check
from secure_ws.probe.session import MARKER, ProbeSession

# ---------------------------------------------------------------------- transport


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


@check(
    "transport.plain_ws",
    "transport",
    "Plain ws:// is not offered where wss:// is expected",
    "Unencrypted sockets expose tokens and messages to anyone on the path.",
    TRANSPORT,
)
async def transport_plain_ws(session: ProbeSession) -> Result:
    url = session.config.url
    if url.startswith("ws://"):
        if _is_loopback(url):
            return Verdict.SKIP, "target is plain ws:// on loopback (test setup, no TLS to test)"
        return Verdict.FAIL, "target itself is plain ws:// on a non-loopback host"
    outcome = await session.attempt(url=session.url_with(scheme="ws"))
    if outcome.accepted and outcome.close_code is None:
        return Verdict.FAIL, f"ws:// on the same host and path: {outcome.describe()}"
    return Verdict.PASS, f"ws:// on the same host and path: {outcome.describe()}"


@check(
    "transport.hsts",
    "transport",
    "The HTTPS side sends Strict-Transport-Security",
    "Without HSTS a first visit can be downgraded and the page's token stolen.",
    TRANSPORT,
)
async def transport_hsts(session: ProbeSession) -> Result:
    if not session.config.url.startswith("wss://"):
        return Verdict.SKIP, "target is not wss://; HSTS applies to https only"
    parts = urllib.parse.urlsplit(session.config.url)
    url = f"https://{parts.netloc}/"
    await session.bucket.take()

    def head() -> str | None:
        request = urllib.request.Request(url, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                value = response.headers.get("Strict-Transport-Security")
                return str(value) if value is not None else None
        except urllib.error.HTTPError as exc:
            value = exc.headers.get("Strict-Transport-Security")
            return str(value) if value is not None else None

    try:
        value = await asyncio.to_thread(head)
    except OSError as exc:
        return Verdict.WARN, f"GET {url} failed: {type(exc).__name__}"
    if not value:
        return Verdict.FAIL, f"GET {url}: no Strict-Transport-Security header"
    match = re.search(r"max-age=(\d+)", value)
    if not match or int(match.group(1)) < 15552000:
        return Verdict.WARN, f"HSTS max-age below 180 days: {value}"
    return Verdict.PASS, f"Strict-Transport-Security: {value}"


# ---------------------------------------------------------------------- handshake


@check(
    "handshake.subprotocol_echo",
    "handshake",
    "A credential offered as a subprotocol is never echoed back",
    "Echoing bearer.<token> puts the token in response headers, logs and proxies.",
    A05,
)
async def handshake_subprotocol_echo(session: ProbeSession) -> Result:
    token = session.config.token if session.config.token_via == "subprotocol" else None  # noqa: S105
    if token:
        outcome = await session.attempt(settle=0.2)
    else:
        bait = f"bearer.{MARKER}"
        outcome = await session.attempt(subprotocols=[bait], credentials=False, settle=0.2)
        token = MARKER
    echoed = [f"{k}: {v}" for k, v in outcome.headers if token in v]
    if outcome.subprotocol and outcome.subprotocol.startswith("bearer."):
        return Verdict.FAIL, f"server selected the credential subprotocol ({outcome.subprotocol})"
    if echoed:
        return Verdict.FAIL, f"credential echoed in response header {echoed[0]}"
    return Verdict.PASS, f"{outcome.describe()}; no credential in response headers"


_VERSION = re.compile(r"\d+\.\d+")


@check(
    "handshake.server_banner",
    "handshake",
    "Handshake headers disclose no server software version",
    "Version banners tell an attacker which known vulnerabilities to try.",
    A05,
)
async def handshake_server_banner(session: ProbeSession) -> Result:
    outcome = await session.attempt(settle=0.1)
    if not outcome.headers:
        outcome = await session.attempt(credentials=False, settle=0.1)
    names = {"server", "x-powered-by", "x-aspnet-version", "via", "x-runtime"}
    leaks = [f"{k}: {v}" for k, v in outcome.headers if k.lower() in names and _VERSION.search(v)]
    if leaks:
        return Verdict.WARN, "version disclosed: " + "; ".join(leaks)
    seen = [f"{k}: {v}" for k, v in outcome.headers if k.lower() in names]
    return Verdict.PASS, "no version in " + (", ".join(seen) if seen else "handshake headers")


# ---------------------------------------------------------------------- close hygiene


_LEAK = re.compile(r"Traceback|File \"|Exception|/site-packages/|SECRET|password", re.I)


@check(
    "close.refusal_hygiene",
    "close",
    "A refused handshake explains itself without leaking",
    "Refusals must carry a short reason code, never a stack trace, secret or the input.",
    A05,
)
async def close_refusal_hygiene(session: ProbeSession) -> Result:
    bait = "bogus-" + MARKER + "-token"
    outcome = await session.attempt(credentials=False, token=bait)
    texts = [
        outcome.body.decode("utf-8", "replace"),
        outcome.close_reason,
        outcome.first_frame or "",
    ]
    texts += [v for _k, v in outcome.headers]
    blob = "\n".join(texts)
    if MARKER in blob:
        return Verdict.FAIL, "the refusal reflects the presented credential"
    if _LEAK.search(blob):
        return Verdict.FAIL, f"the refusal leaks internals: {_LEAK.search(blob).group(0)}"  # type: ignore[union-attr]
    if outcome.accepted and outcome.close_code is None:
        return Verdict.FAIL, "a bogus credential was accepted"
    if outcome.status is not None and outcome.status >= 500:
        return Verdict.FAIL, f"refusal is a server error ({outcome.describe()})"
    if outcome.accepted and len(outcome.close_reason.encode()) > 123:
        return Verdict.FAIL, "close reason longer than 123 bytes"
    return Verdict.PASS, f"{outcome.describe()}; nothing reflected or leaked"


@check(
    "close.unknown_path",
    "close",
    "An unknown path is refused cleanly, not with a 500",
    "Unhandled routing errors become 500s and tracebacks an attacker can trigger at will.",
    A05,
)
async def close_unknown_path(session: ProbeSession) -> Result:
    outcome = await session.attempt(url=session.url_with(path_suffix="probe-no-such-path/"))
    if outcome.status is not None and outcome.status >= 500:
        return Verdict.FAIL, f"unknown path: {outcome.describe()}"
    if outcome.accepted and outcome.close_code in (1011, 4011, 1006):
        return Verdict.FAIL, f"unknown path: {outcome.describe()}"
    return Verdict.PASS, f"unknown path: {outcome.describe()}"
