"""One-time tickets: issued over an authenticated POST, spent once, bound to user and Origin."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from secure_ws.codes import AuthMethod, Reason
from secure_ws.gate.credentials import CredentialsMiddleware
from secure_ws.gate.origin import OriginMiddleware
from secure_ws.gate.tickets import TicketGrant, consume_ticket, issue_ticket
from secure_ws.sessions.django_session import session_credential_id
from secure_ws.sessions.revocation import SESSION_CLAIM
from secure_ws.state import key
from tests.conftest import DEMO_PASSWORD
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import ORIGIN, build_headers, set_gate
from tests.test_revocation import in_thread

pytestmark = pytest.mark.usefixtures("demo_users")


async def test_ticket_is_consumed_once(redis_client: Any) -> None:
    ticket = await issue_ticket(7, ORIGIN)
    assert redis_client.keys(f"*{ticket}*") == []  # stored under its hash, never in clear
    assert await consume_ticket(ticket, ORIGIN) == TicketGrant(user_id="7")
    assert await consume_ticket(ticket, ORIGIN) is None


async def test_ticket_from_another_origin_is_refused_and_spent() -> None:
    ticket = await issue_ticket(7, ORIGIN)
    assert await consume_ticket(ticket, "https://evil.example") is None
    assert await consume_ticket(ticket, ORIGIN) is None


async def test_ticket_expires_after_its_ttl(redis_client: Any, settings: Any) -> None:
    set_gate(settings, TICKET_TTL=5)
    await issue_ticket(7, ORIGIN)
    stored = redis_client.keys(key("ticket", "*"))
    assert len(stored) == 1
    assert 0 < redis_client.ttl(stored[0]) <= 5


@pytest.mark.parametrize("junk", ["", "x" * 500, "not-a-ticket", "../../etc"])
async def test_unknown_or_junk_tickets_are_refused(junk: str) -> None:
    assert await consume_ticket(junk, ORIGIN) is None


async def test_in_process_tickets_without_redis(settings: Any) -> None:
    set_gate(settings, REDIS_URL=None)
    ticket = await issue_ticket(3, ORIGIN)
    assert await consume_ticket(ticket, ORIGIN) == TicketGrant(user_id="3")
    assert await consume_ticket(ticket, ORIGIN) is None


def _session_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="alice", password=DEMO_PASSWORD)
    return client


def test_view_refuses_anonymous_callers(client: Client) -> None:
    response = client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 401


def test_view_enforces_csrf_for_session_auth(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [ORIGIN]
    client = _session_client()
    response = client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN)
    assert response.status_code == 403
    assert "ticket" not in response.json()


def test_view_issues_a_ticket_with_session_and_csrf(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = [ORIGIN]
    client = _session_client()
    csrf = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = csrf
    response = client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201
    assert response.json()["ticket"]


def test_view_issues_a_ticket_for_a_jwt_caller(
    client: Client, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    response = client.post(
        "/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 201
    body = response.json()
    assert len(body["ticket"]) >= 40
    assert body["expires_in"] == 30
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null"])
def test_view_refuses_a_missing_or_foreign_origin(
    client: Client, demo_users: dict[str, Any], token_for: Any, origin: str | None
) -> None:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(demo_users['alice'])}"}
    if origin is not None:
        headers["HTTP_ORIGIN"] = origin
    response = client.post("/api/ws-ticket/", **headers)
    assert response.status_code == 403
    assert "ticket" not in response.json()


async def test_ticket_opens_one_connection_only(
    communicator: Any, demo_users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await issue_ticket(demo_users["alice"].pk, ORIGIN)
    app = OriginMiddleware(CredentialsMiddleware(info_consumer))
    first = communicator(app, path=f"/ws/info/?ticket={ticket}")
    assert (await first.connect())[0]
    report = json.loads(await first.receive_from())
    assert (report["auth_method"], report["username"]) == (AuthMethod.TICKET.value, "alice")
    await first.disconnect()
    second = communicator(app, path=f"/ws/info/?ticket={ticket}")
    assert not (await second.connect())[0]
    await second.wait()
    assert f"reason={Reason.TICKET_INVALID.value}" in caplog.text
    assert ticket not in caplog.text


async def test_ticket_without_origin_is_refused(
    communicator: Any, demo_users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await issue_ticket(demo_users["alice"].pk, ORIGIN)
    app = OriginMiddleware(CredentialsMiddleware(info_consumer))
    comm = communicator(app, path=f"/ws/info/?ticket={ticket}", headers=build_headers(origin=None))
    assert not (await comm.connect())[0]
    await comm.wait()
    assert f"reason={Reason.ORIGIN_MISSING.value}" in caplog.text


async def test_ticket_of_a_deactivated_user_is_refused(
    communicator: Any, demo_users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    mallory = demo_users["mallory"]

    def deactivate() -> None:
        mallory.is_active = False
        mallory.save(update_fields=["is_active"])

    await database_sync_to_async(deactivate)()
    ticket = await issue_ticket(mallory.pk, ORIGIN)
    app = OriginMiddleware(CredentialsMiddleware(info_consumer))
    comm = communicator(app, path=f"/ws/info/?ticket={ticket}")
    assert not (await comm.connect())[0]
    await comm.wait()
    assert f"reason={Reason.USER_INACTIVE.value}" in caplog.text


# -- a ticket carries the identity it was issued for (issue 11) ---------------------------


def _jwt_pair(username: str) -> dict[str, str]:
    response = Client().post(
        "/api/token/", {"username": username, "password": DEMO_PASSWORD}, secure=True
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def _jwt_ticket(access: str) -> str:
    response = Client().post(
        "/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=f"Bearer {access}"
    )
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def _session_ticket(settings: Any) -> tuple[Client, str]:
    settings.CSRF_TRUSTED_ORIGINS = [ORIGIN]
    client = _session_client()
    csrf = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = csrf
    response = client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201, response.content
    return client, str(response.json()["ticket"])


def _spend(communicator: Any, ticket: str) -> Any:
    app = OriginMiddleware(CredentialsMiddleware(info_consumer))
    return communicator(app, path=f"/ws/info/?ticket={ticket}")


async def _report(comm: Any) -> dict[str, Any]:
    assert (await comm.connect())[0]
    report: dict[str, Any] = json.loads(await comm.receive_from())
    await comm.disconnect()
    return report


async def _refused(comm: Any, caplog: pytest.LogCaptureFixture, reason: Reason) -> None:
    assert not (await comm.connect())[0]
    await comm.wait()
    assert f"reason={reason.value}" in caplog.text


async def test_jwt_ticket_connection_carries_the_tokens_session_and_expiry(
    communicator: Any,
) -> None:
    pair = await in_thread(_jwt_pair)("alice")
    ticket = await in_thread(_jwt_ticket)(pair["access"])
    report = await _report(_spend(communicator, ticket))
    access = AccessToken(pair["access"])
    assert (report["auth_method"], report["username"]) == ("ticket", "alice")
    assert report["session_id"] == access[SESSION_CLAIM]
    assert report["token_exp"] == pytest.approx(access["exp"])


async def test_session_ticket_connection_carries_a_hash_of_the_session_and_its_expiry(
    communicator: Any, settings: Any
) -> None:
    client, ticket = await in_thread(_session_ticket)(settings)
    session_key = client.session.session_key
    report = await _report(_spend(communicator, ticket))
    assert report["session_id"] == session_credential_id(session_key)
    assert session_key not in json.dumps(report)
    stored = await in_thread(lambda: Session.objects.get(session_key=session_key).expire_date)()
    assert report["token_exp"] == pytest.approx(stored.timestamp())


async def test_ticket_of_a_session_logged_out_before_it_is_spent_is_refused(
    communicator: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, ticket = await in_thread(_session_ticket)(settings)
    await in_thread(client.logout)()
    await _refused(_spend(communicator, ticket), caplog, Reason.TOKEN_REVOKED)


async def test_ticket_of_a_jwt_session_logged_out_before_it_is_spent_is_refused(
    communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pair = await in_thread(_jwt_pair)("bob")
    ticket = await in_thread(_jwt_ticket)(pair["access"])
    status = await in_thread(
        lambda: Client().post("/api/token/blacklist/", {"refresh": pair["refresh"]}).status_code
    )()
    assert status == 200
    await _refused(_spend(communicator, ticket), caplog, Reason.TOKEN_REVOKED)


async def test_ticket_issued_before_a_password_change_is_refused(
    communicator: Any, demo_users: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pair = await in_thread(_jwt_pair)("carol")
    ticket = await in_thread(_jwt_ticket)(pair["access"])

    def change_password() -> None:
        carol = demo_users["carol"]
        carol.set_password("another-password-456")
        carol.save()

    await in_thread(change_password)()
    await _refused(_spend(communicator, ticket), caplog, Reason.TOKEN_REVOKED)


@pytest.mark.parametrize("reason", [Reason.TOKEN_EXPIRED, Reason.SESSION_EXPIRED])
async def test_ticket_whose_credential_expired_before_it_is_spent_is_refused(
    communicator: Any,
    demo_users: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    reason: Reason,
) -> None:
    grant = TicketGrant(str(demo_users["alice"].pk), exp=time.time() - 1, expiry_reason=reason)
    ticket = await issue_ticket(grant, ORIGIN)
    await _refused(_spend(communicator, ticket), caplog, reason)
