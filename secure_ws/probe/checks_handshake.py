"""Handshake checks: baseline, credentials, tokens, Origin, transport, headers, refusals.

Each check returns ``(verdict, evidence)``; evidence is redacted by the runner. A check
that expects a refusal treats "accepted then closed at once with a refusal code" as a
refusal too, because some servers accept and close to tell the client why.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import urllib.request

from secure_ws.probe import tokens as jwt
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import OWASP_WS, check
from secure_ws.probe.session import MARKER, Handshake, ProbeSession

Result = tuple[Verdict, str]

A01 = "OWASP A01:2021 Broken Access Control; " + OWASP_WS + "#authentication"
A07 = "OWASP A07:2021 Identification and Authentication Failures; " + OWASP_WS + "#authentication"
ORIGIN = (
    "OWASP WS cheat sheet: Origin validation (CSWSH); "
    + OWASP_WS
    + "#cross-site-websocket-hijacking-cswsh"
)
TRANSPORT = "OWASP A02:2021 Cryptographic Failures; " + OWASP_WS + "#transport-security"
A05 = "OWASP A05:2021 Security Misconfiguration; " + OWASP_WS
A04 = "OWASP A04:2021 Insecure Design (DoS); " + OWASP_WS + "#denial-of-service"


def expect_refused(outcome: Handshake, what: str) -> Result:
    """PASS when the handshake was refused, FAIL when it was accepted."""
    if outcome.refused:
        return Verdict.PASS, f"{what}: refused ({outcome.describe()})"
    if outcome.accepted:
        return Verdict.FAIL, f"{what}: {outcome.describe()}"
    if outcome.status is not None and outcome.status >= 500:
        return Verdict.FAIL, f"{what}: server error {outcome.describe()} instead of a refusal"
    return Verdict.WARN, f"{what}: no clean answer ({outcome.describe()})"


async def _baseline_needed(session: ProbeSession) -> Result | None:
    baseline = await session.detect()
    if not baseline.accepted or baseline.close_code is not None:
        return Verdict.SKIP, f"no working baseline connection ({baseline.describe()})"
    return None


@check(
    "baseline.connect",
    "baseline",
    "The given credentials and origin open a connection",
    "Every other verdict means something only if a legitimate client can connect.",
    A05,
)
async def baseline_connect(session: ProbeSession) -> Result:
    outcome = await session.detect()
    if outcome.accepted and outcome.close_code is None:
        mode = "speaks secure-ws.v1" if session.mode == "v1" else "generic JSON mode"
        return Verdict.PASS, f"{outcome.describe()}; {mode}"
    return Verdict.FAIL, f"cannot connect with the given credentials: {outcome.describe()}"


# ---------------------------------------------------------------------- auth


@check(
    "auth.no_credentials",
    "auth",
    "Handshake without credentials is refused",
    "An endpoint that accepts anonymous sockets exposes its messages to anyone.",
    A07,
)
async def auth_no_credentials(session: ProbeSession) -> Result:
    outcome = await session.attempt(credentials=False)
    return expect_refused(outcome, "no credentials")


@check(
    "auth.garbage_token",
    "auth",
    "A malformed bearer token is refused",
    "Token parsing must fail closed; a lenient parser is an authentication bypass.",
    A07,
)
async def auth_garbage_token(session: ProbeSession) -> Result:
    outcome = await session.attempt(credentials=False, token="not-a-jwt-" + MARKER)
    return expect_refused(outcome, "malformed token")


@check(
    "auth.oversized_credential",
    "auth",
    "A 16 KiB credential is refused cleanly",
    "Unbounded credential parsing is a cheap denial of service; the answer must be a 4xx.",
    A04,
)
async def auth_oversized_credential(session: ProbeSession) -> Result:
    outcome = await session.attempt(credentials=False, token="A" * 16384)
    if not outcome.accepted and outcome.status is None and outcome.error:
        # A server may drop an oversized header outright; that is a refusal too.
        return Verdict.PASS, f"16 KiB credential: connection dropped ({outcome.error})"
    return expect_refused(outcome, "16 KiB credential")


@check(
    "auth.query_string_token",
    "auth",
    "A token in the query string is refused",
    "URLs end up in proxy logs, browser history and Referer headers; tokens must not.",
    A07,
)
async def auth_query_string_token(session: ProbeSession) -> Result:
    token = session.config.token or jwt.alg_none_token(None)
    url = session.url_with(query="token=" + urllib.parse.quote(token))
    outcome = await session.attempt(credentials=False, url=url)
    kind = "valid token" if session.config.token else "dummy token"
    return expect_refused(outcome, f"?token=<{kind}>")


@check(
    "auth.ticket_single_use",
    "auth",
    "A one-time ticket cannot be used twice",
    "A replayable ticket in a URL is a long-lived credential that leaks through logs.",
    A07,
)
async def auth_ticket_single_use(session: ProbeSession) -> Result:
    if not session.config.ticket_url:
        return Verdict.SKIP, "no --ticket-url given"
    try:
        ticket = await session.fetch_ticket()
    except RuntimeError as exc:
        return Verdict.FAIL, str(exc)
    url = session.url_with(query="ticket=" + urllib.parse.quote(ticket))
    first = await session.attempt(credentials=False, url=url)
    if not first.accepted or first.close_code is not None:
        return Verdict.FAIL, f"fresh ticket not accepted: {first.describe()}"
    second = await session.attempt(credentials=False, url=url)
    return expect_refused(second, "ticket replay")


# ---------------------------------------------------------------------- tokens


@check(
    "tokens.alg_none",
    "tokens",
    "An unsigned token (alg none) is refused",
    "Accepting alg=none lets anyone mint tokens for any user.",
    A07,
)
async def tokens_alg_none(session: ProbeSession) -> Result:
    forged = jwt.alg_none_token(session.config.token)
    return expect_refused(await session.attempt(credentials=False, token=forged), "alg none")


@check(
    "tokens.tampered_claims",
    "tokens",
    "A token with altered claims and the old signature is refused",
    "The signature must cover the claims: a changed user id or expiry must not verify.",
    A07,
)
async def tokens_tampered(session: ProbeSession) -> Result:
    if not session.config.token:
        return Verdict.SKIP, "no --token to tamper with"
    forged = jwt.tampered_token(session.config.token)
    if forged is None:
        return Verdict.SKIP, "the given token is not a JWT"
    return expect_refused(await session.attempt(credentials=False, token=forged), "tampered")


@check(
    "tokens.other_alg",
    "tokens",
    "A token signed with another algorithm is refused",
    "The server must pin its algorithm; alg confusion turns keys into forgeable secrets.",
    A07,
)
async def tokens_other_alg(session: ProbeSession) -> Result:
    forged = jwt.other_alg_token(session.config.token, session.config.signing_key)
    if forged is None:
        return Verdict.SKIP, "needs --token (JWT) or --signing-key"
    how = "correctly signed" if session.config.signing_key else "header alg swapped"
    outcome = await session.attempt(credentials=False, token=forged)
    return expect_refused(outcome, f"other alg ({how})")


@check(
    "tokens.expired",
    "tokens",
    "An expired but correctly signed token is refused",
    "Expiry is what bounds a stolen token's use; it must be enforced at the handshake.",
    A07,
)
async def tokens_expired(session: ProbeSession) -> Result:
    if not session.config.signing_key:
        return Verdict.SKIP, "needs --signing-key to sign an expired token"
    forged = jwt.expired_token(session.config.token, session.config.signing_key)
    return expect_refused(await session.attempt(credentials=False, token=forged), "expired")


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
