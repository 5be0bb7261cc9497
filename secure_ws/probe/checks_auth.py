"""Credential and token checks: no credential, garbage, oversized, query string, tickets,
alg none, tampered, other algorithm, expired."""

from __future__ import annotations

import urllib.parse
import urllib.request

from secure_ws.probe import tokens as jwt
from secure_ws.probe.checks_common import (
    A04,
    A07,
    Result,
    expect_refused,
)
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import check
from secure_ws.probe.session import MARKER, ProbeSession

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
