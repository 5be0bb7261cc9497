"""Gate step 5: credentials, checked by simplejwt's own validation."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from secure_ws.codes import APP_SUBPROTOCOL, AuthMethod, Reason
from secure_ws.exceptions import Refused
from secure_ws.gate import userstate
from secure_ws.gate.credentials import CredentialsMiddleware, validate_access_token
from secure_ws.gate.origin import OriginMiddleware
from secure_ws.sessions import revocation
from tests.conftest import DEMO_PASSWORD
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import build_headers, set_gate

pytestmark = pytest.mark.usefixtures("demo_users")


def gate() -> Any:
    return OriginMiddleware(CredentialsMiddleware(info_consumer))


async def attempt(comm: Any) -> tuple[bool, dict[str, Any] | None]:
    connected, _ = await comm.connect()
    if not connected:
        await comm.wait()
        return False, None
    report = json.loads(await comm.receive_from())
    await comm.disconnect()
    return True, report


async def accepted(comm: Any) -> dict[str, Any]:
    """Connect, expect the gate to let the connection through; return the scope report."""
    connected, report = await attempt(comm)
    assert connected
    assert report is not None
    return report


def bearer(token: str) -> list[str]:
    return [APP_SUBPROTOCOL, f"bearer.{token}"]


def signed(payload: dict[str, Any], key: str | None = None, algorithm: str = "HS256") -> str:
    signing_key = key or django_settings.SIMPLE_JWT["SIGNING_KEY"]
    return jwt.encode(payload, signing_key, algorithm=algorithm)


def claims(user: Any, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": "j" * 32,
        "user_id": str(user.pk),
        # The demo (and these settings) run with CHECK_REVOKE_TOKEN: the password claim.
        "hash_password": get_md5_hash_password(user.password),
        **extra,
    }


async def assert_refused(
    comm: Any, caplog: pytest.LogCaptureFixture, reason: Reason, secret: str | None = None
) -> None:
    with caplog.at_level(logging.INFO):
        connected, _ = await attempt(comm)
    assert not connected
    assert f"reason={reason.value}" in caplog.text
    assert "Traceback" not in caplog.text
    if secret:
        assert secret not in caplog.text


async def test_subprotocol_token_is_accepted_and_stripped(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    alice = demo_users["alice"]
    token = token_for(alice, sid=None)
    report = await accepted(communicator(gate(), subprotocols=bearer(token)))
    assert report["subprotocols"] == [APP_SUBPROTOCOL]
    assert report["auth_method"] == AuthMethod.SUBPROTOCOL.value
    assert (report["user_id"], report["username"]) == (alice.pk, "alice")
    assert report["token_jti"] == AccessToken(token)["jti"]
    assert report["token_exp"] == pytest.approx(AccessToken(token)["exp"])


async def test_header_token_without_origin_is_accepted(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    headers = build_headers(origin=None, authorization=f"Bearer {token_for(demo_users['bob'])}")
    report = await accepted(communicator(gate(), headers=headers))
    assert report["auth_method"] == AuthMethod.HEADER.value


async def test_subprotocol_token_without_origin_is_refused(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    token = token_for(demo_users["bob"])
    comm = communicator(gate(), headers=build_headers(origin=None), subprotocols=bearer(token))
    await assert_refused(comm, caplog, Reason.ORIGIN_MISSING, token)


async def test_missing_credentials_are_refused(communicator: Any, caplog: Any) -> None:
    await assert_refused(communicator(gate()), caplog, Reason.CREDENTIALS_MISSING)


async def test_anonymous_is_accepted_only_when_authentication_is_optional(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, REQUIRE_AUTHENTICATION=False)
    report = await accepted(communicator(gate()))
    assert report["authenticated"] is False


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("alg_none", Reason.CREDENTIALS_INVALID),
        ("other_algorithm", Reason.CREDENTIALS_INVALID),
        ("wrong_key", Reason.CREDENTIALS_INVALID),
        ("expired", Reason.TOKEN_EXPIRED),
        ("not_yet_valid", Reason.CREDENTIALS_INVALID),
        ("refresh_token", Reason.CREDENTIALS_INVALID),
        ("no_token_type", Reason.CREDENTIALS_INVALID),
        ("no_jti", Reason.CREDENTIALS_INVALID),
        ("unknown_user", Reason.CREDENTIALS_INVALID),
        ("non_numeric_user", Reason.CREDENTIALS_INVALID),
        ("list_user", Reason.CREDENTIALS_INVALID),
        ("inactive_user", Reason.USER_INACTIVE),
        ("garbage", Reason.CREDENTIALS_INVALID),
        ("oversized", Reason.CREDENTIALS_INVALID),
    ],
)
async def test_bad_tokens_are_refused_without_traceback(
    communicator: Any,
    demo_users: dict[str, Any],
    caplog: Any,
    case: str,
    reason: Reason,
) -> None:
    token = await database_sync_to_async(_bad_token)(case, demo_users)
    comm = communicator(gate(), subprotocols=bearer(token))
    await assert_refused(comm, caplog, reason, token)


def _bad_token(case: str, users: dict[str, Any]) -> str:
    alice = users["alice"]
    builders: dict[str, Any] = {
        "alg_none": lambda: jwt.encode(claims(alice), None, algorithm="none"),
        "other_algorithm": lambda: signed(claims(alice), algorithm="HS384"),
        "wrong_key": lambda: signed(claims(alice), key="k" * 64),
        "expired": lambda: _expired(alice),
        "not_yet_valid": lambda: signed(claims(alice, nbf=int(time.time()) + 3600)),
        "refresh_token": lambda: str(RefreshToken.for_user(alice)),
        "no_token_type": lambda: signed(
            {k: v for k, v in claims(alice).items() if k != "token_type"}
        ),
        "no_jti": lambda: signed({k: v for k, v in claims(alice).items() if k != "jti"}),
        "unknown_user": lambda: signed(claims(alice, user_id="987654")),
        "non_numeric_user": lambda: signed(claims(alice, user_id="abc")),
        "list_user": lambda: signed(claims(alice, user_id=[1, 2])),
        "inactive_user": lambda: _inactive_token(users["mallory"]),
        "garbage": lambda: "not.a.jwt",
        "oversized": lambda: signed(claims(alice, pad="x" * 5000)),
    }
    return str(builders[case]())


def _expired(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))
    return str(token)


def _inactive_token(user: Any) -> str:
    user.is_active = False
    user.save(update_fields=["is_active"])
    return str(AccessToken.for_user(user))


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer a b", "Basic abc", "Bearer a, Bearer b", "bearer"]
)
async def test_malformed_authorization_header_is_refused(
    communicator: Any, caplog: Any, authorization: str
) -> None:
    comm = communicator(gate(), headers=build_headers(authorization=authorization))
    await assert_refused(comm, caplog, Reason.CREDENTIALS_INVALID)


async def test_query_string_token_is_refused_by_default(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    token = token_for(demo_users["alice"])
    comm = communicator(gate(), path=f"/ws/info/?token={token}")
    await assert_refused(comm, caplog, Reason.QUERY_TOKEN_REFUSED, token)


async def test_query_string_token_works_when_turned_on(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, settings: Any
) -> None:
    set_gate(settings, ALLOW_QUERY_STRING_TOKEN=True)
    comm = communicator(gate(), path=f"/ws/info/?token={token_for(demo_users['alice'])}")
    report = await accepted(comm)
    assert report["auth_method"] == AuthMethod.QUERY.value


async def test_two_credentials_at_once_are_refused(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    token = token_for(demo_users["alice"])
    headers = build_headers(authorization=f"Bearer {token}")
    comm = communicator(gate(), headers=headers, subprotocols=bearer(token))
    await assert_refused(comm, caplog, Reason.CREDENTIALS_INVALID, token)


async def test_two_bearer_subprotocol_entries_are_refused(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    token = token_for(demo_users["alice"])
    subprotocols = [APP_SUBPROTOCOL, f"bearer.{token}", f"bearer.{token}"]
    await assert_refused(
        communicator(gate(), subprotocols=subprotocols), caplog, Reason.CREDENTIALS_INVALID
    )


async def test_deactivated_user_is_refused_at_once_after_invalidation(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, caplog: Any
) -> None:
    bob = demo_users["bob"]
    token = token_for(bob)
    assert (await attempt(communicator(gate(), subprotocols=bearer(token))))[0]

    def deactivate() -> None:
        bob.is_active = False
        bob.save(update_fields=["is_active"])
        userstate.invalidate_user_sync(bob.pk)

    await database_sync_to_async(deactivate)()
    comm = communicator(gate(), subprotocols=bearer(token))
    await assert_refused(comm, caplog, Reason.USER_INACTIVE)


async def test_changed_password_revokes_tokens_with_check_revoke_token(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, settings: Any, caplog: Any
) -> None:
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "CHECK_REVOKE_TOKEN": True}
    carol = demo_users["carol"]
    # simplejwt's tokens module keeps its import-time settings (simplejwt#58), so for_user
    # does not see the override: add the claim it would add with CHECK_REVOKE_TOKEN on.
    token = token_for(carol, hash_password=get_md5_hash_password(carol.password))
    assert (await attempt(communicator(gate(), subprotocols=bearer(token))))[0]

    def change_password() -> None:
        carol.set_password("another-password-456")
        carol.save()
        userstate.invalidate_user_sync(carol.pk)

    await database_sync_to_async(change_password)()
    comm = communicator(gate(), subprotocols=bearer(token))
    await assert_refused(comm, caplog, Reason.TOKEN_REVOKED, token)


async def test_simple_jwt_overrides_reach_the_gate(
    demo_users: dict[str, Any], settings: Any
) -> None:
    alice = demo_users["alice"]
    plain = signed(claims(alice))
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "AUDIENCE": "secure-ws", "ISSUER": "tests"}
    with pytest.raises(Refused) as caught:
        await validate_access_token(plain)
    assert caught.value.reason is Reason.CREDENTIALS_INVALID
    good = signed(claims(alice, aud="secure-ws", iss="tests"))
    assert (await validate_access_token(good)).user.pk == alice.pk


async def test_validate_access_token_returns_the_contract(
    demo_users: dict[str, Any], token_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_revoked(session_id: str) -> bool:
        return False

    monkeypatch.setattr(revocation, "is_session_revoked", not_revoked, raising=False)
    token = token_for(demo_users["alice"], sid="s-1")
    validated = await validate_access_token(token)
    assert validated.user.username == "alice"
    assert validated.session_id == "s-1"
    assert validated.jti == AccessToken(token)["jti"]
    assert validated.exp == pytest.approx(AccessToken(token)["exp"])


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/0", None])
async def test_token_of_a_revoked_session_is_refused(
    communicator: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    caplog: Any,
    settings: Any,
    redis_url: str | None,
) -> None:
    # Revoked for real: with Redis the admission script reads the mark, without it the
    # database row.
    set_gate(settings, REDIS_URL=redis_url)
    await database_sync_to_async(revocation.revoke_session)("dead")
    live = token_for(demo_users["alice"], sid="alive")
    assert (await attempt(communicator(gate(), subprotocols=bearer(live))))[0]
    dead = token_for(demo_users["alice"], sid="dead")
    await assert_refused(
        communicator(gate(), subprotocols=bearer(dead)), caplog, Reason.TOKEN_REVOKED
    )


async def test_accepted_handshakes_hit_the_database_once_per_cache_ttl(
    communicator: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    loads: list[str],
) -> None:
    token = token_for(demo_users["alice"])
    for _ in range(5):
        assert (await attempt(communicator(gate(), subprotocols=bearer(token))))[0]
    assert len(loads) == 1


def _login_cookie() -> str:
    client = Client()
    assert client.login(username="alice", password=DEMO_PASSWORD)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


async def test_session_cookie_is_ignored_unless_turned_on(communicator: Any, caplog: Any) -> None:
    cookie = await database_sync_to_async(_login_cookie)()
    comm = communicator(gate(), headers=build_headers(cookie=cookie))
    await assert_refused(comm, caplog, Reason.CREDENTIALS_MISSING)


async def test_session_cookie_works_when_turned_on(communicator: Any, settings: Any) -> None:
    set_gate(settings, ALLOW_SESSION_AUTH=True)
    cookie = await database_sync_to_async(_login_cookie)()
    report = await accepted(communicator(gate(), headers=build_headers(cookie=cookie)))
    assert (report["auth_method"], report["username"]) == (AuthMethod.SESSION.value, "alice")


async def test_session_cookie_without_origin_is_refused(
    communicator: Any, settings: Any, caplog: Any
) -> None:
    set_gate(settings, ALLOW_SESSION_AUTH=True)
    cookie = await database_sync_to_async(_login_cookie)()
    comm = communicator(gate(), headers=build_headers(origin=None, cookie=cookie))
    await assert_refused(comm, caplog, Reason.ORIGIN_MISSING)


async def test_stale_session_cookie_does_not_block_anonymous_access(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, ALLOW_SESSION_AUTH=True, REQUIRE_AUTHENTICATION=False)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}=not-a-real-session-key-000000000"
    report = await accepted(communicator(gate(), headers=build_headers(cookie=cookie)))
    assert report["authenticated"] is False


def _sliding_token(user: Any, blacklisted: bool = False) -> str:
    from rest_framework_simplejwt.tokens import SlidingToken

    token = SlidingToken.for_user(user)
    if blacklisted:
        token.blacklist()
    return str(token)


async def test_sliding_token_is_refused_unless_simple_jwt_accepts_sliding_tokens(
    communicator: Any, demo_users: dict[str, Any], caplog: Any
) -> None:
    token = await database_sync_to_async(_sliding_token)(demo_users["alice"])
    comm = communicator(gate(), subprotocols=bearer(token))
    await assert_refused(comm, caplog, Reason.CREDENTIALS_INVALID, token)


async def test_sliding_tokens_follow_auth_token_classes_and_the_blacklist(
    communicator: Any, demo_users: dict[str, Any], settings: Any, caplog: Any
) -> None:
    settings.SIMPLE_JWT = {
        **settings.SIMPLE_JWT,
        "AUTH_TOKEN_CLASSES": (
            "rest_framework_simplejwt.tokens.AccessToken",
            "rest_framework_simplejwt.tokens.SlidingToken",
        ),
    }
    live = await database_sync_to_async(_sliding_token)(demo_users["alice"])
    report = await accepted(communicator(gate(), subprotocols=bearer(live)))
    assert report["username"] == "alice"
    dead = await database_sync_to_async(_sliding_token)(demo_users["alice"], True)
    comm = communicator(gate(), subprotocols=bearer(dead))
    await assert_refused(comm, caplog, Reason.CREDENTIALS_INVALID, dead)


# -- the raw Sec-WebSocket-Protocol header loses the token too (issue 11, item 5) ---------


@pytest.mark.parametrize("offered_app", [True, False])
async def test_bearer_entry_is_gone_from_the_raw_headers_downstream(
    communicator: Any, demo_users: dict[str, Any], token_for: Any, offered_app: bool
) -> None:
    from secure_ws.gate.handshake import get_headers

    token = token_for(demo_users["alice"])
    offered = [APP_SUBPROTOCOL, f"bearer.{token}"] if offered_app else [f"bearer.{token}"]
    raw_headers = build_headers(sec_websocket_protocol=", ".join(offered))
    servers_list = list(raw_headers)
    seen: dict[str, Any] = {}

    async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["headers"] = list(scope["headers"])
        seen["parsed"] = get_headers(scope).get("sec-websocket-protocol")
        await info_consumer(scope, receive, send)

    app = OriginMiddleware(CredentialsMiddleware(recorder))
    comm = communicator(app, headers=raw_headers, subprotocols=offered)
    assert (await accepted(comm))["username"] == "alice"
    assert token not in repr(seen["headers"])
    assert b"bearer." not in b"".join(value for _, value in seen["headers"])
    if offered_app:
        assert (b"sec-websocket-protocol", APP_SUBPROTOCOL.encode()) in seen["headers"]
        assert seen["parsed"] == APP_SUBPROTOCOL
    else:
        assert b"sec-websocket-protocol" not in [name for name, _ in seen["headers"]]
        assert seen["parsed"] is None
    assert raw_headers == servers_list  # the server's own list was copied, not mutated


# -- the parsed headers do not outlive the handshake (issue 12) ---------------------------


async def test_the_parsed_headers_are_not_kept_in_the_scope_past_the_gate(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    from secure_ws.gate.handshake import HEADERS_SCOPE_KEY, get_headers

    token = token_for(demo_users["alice"])
    seen: dict[str, Any] = {}

    async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["cached"] = HEADERS_SCOPE_KEY in scope
        seen["origin"] = get_headers(scope).get("origin")  # still parsed on demand
        scope.pop(HEADERS_SCOPE_KEY, None)
        await info_consumer(scope, receive, send)

    app = OriginMiddleware(CredentialsMiddleware(recorder))
    comm = communicator(app, headers=build_headers(authorization=f"Bearer {token}"))
    assert (await accepted(comm))["username"] == "alice"
    assert seen["cached"] is False
    assert seen["origin"] is not None
