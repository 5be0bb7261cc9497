"""JWT surgery for the token checks: decode without verifying, forge, tamper.

Only the standard library is used (HMAC-SHA256/384/512), so the probe needs no JWT
library and works against any stack. Forged tokens are secrets like real ones: the
evidence redaction removes anything shaped like a JWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Return ``(header, claims)`` of a compact JWS without checking it, or ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def encode(header: dict[str, Any], claims: dict[str, Any], key: str | None) -> str:
    """Encode a JWS; HMAC-sign it when ``key`` is given and the alg is HS*, else no signature."""
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    digest = _HMAC.get(str(header.get("alg")))
    if key is None or digest is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode("ascii"), digest).digest()
    return signing_input + "." + b64url(signature)


def template_claims(token: str | None) -> dict[str, Any]:
    """Claims to forge from: the given token's, or plausible simplejwt-style ones."""
    decoded = decode_unverified(token) if token else None
    if decoded is not None:
        return dict(decoded[1])
    now = int(time.time())
    return {"token_type": "access", "user_id": "1", "sub": "1", "iat": now, "exp": now + 300}


def alg_none_token(token: str | None) -> str:
    """The token's claims with ``alg: none`` and no signature."""
    return encode({"alg": "none", "typ": "JWT"}, template_claims(token), None)


def tampered_token(token: str) -> str | None:
    """The token with its claims changed (later ``exp``, another user) and the old signature."""
    parts = token.split(".")
    decoded = decode_unverified(token)
    if decoded is None:
        return None
    claims = dict(decoded[1])
    claims["exp"] = int(claims.get("exp", time.time())) + 86400
    for key in ("user_id", "sub"):
        if key in claims:
            claims[key] = "2" if str(claims[key]) == "1" else "1"
    return (
        parts[0] + "." + b64url(json.dumps(claims, separators=(",", ":")).encode()) + "." + parts[2]
    )


def expired_token(token: str | None, key: str) -> str:
    """The token's claims, expired an hour ago, correctly signed with ``key``."""
    claims = template_claims(token)
    now = int(time.time())
    claims.update(iat=now - 7200, exp=now - 3600)
    alg = "HS256"
    if token and (decoded := decode_unverified(token)) is not None:
        alg = str(decoded[0].get("alg", "HS256"))
    return encode({"alg": alg if alg in _HMAC else "HS256", "typ": "JWT"}, claims, key)


def other_alg_token(token: str | None, key: str | None) -> str | None:
    """The token's claims under another algorithm than the server's.

    With ``key``: correctly signed with a different HMAC (the server must pin its alg).
    Without: the header's alg swapped, the signature kept (alg confusion).
    """
    decoded = decode_unverified(token) if token else None
    current = str(decoded[0].get("alg", "HS256")) if decoded else "HS256"
    other = "HS512" if current != "HS512" else "HS256"
    if key is not None:
        return encode({"alg": other, "typ": "JWT"}, template_claims(token), key)
    if token is None or decoded is None:
        return None
    header = dict(decoded[0], alg=other)
    parts = token.split(".")
    return (
        b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + parts[1] + "." + parts[2]
    )
