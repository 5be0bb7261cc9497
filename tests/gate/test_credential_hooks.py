"""The credentials step's hooks: a subclass overriding one of them, through the whole gate."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.routing import URLRouter
from django.urls import path

from secure_ws.codes import AuthMethod, Reason
from secure_ws.exceptions import Refused
from secure_ws.gate.credentials import (
    CredentialsMiddleware,
    PresentedCredential,
    ValidatedCredential,
)
from secure_ws.gate.handshake import get_headers
from secure_ws.gate.stack import secure_websocket
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import build_headers

pytestmark = pytest.mark.usefixtures("demo_users")


class ApiKeyHeaderCredentials(CredentialsMiddleware):
    """Also reads the access token from an ``X-Api-Token`` header."""

    def get_raw_credential(self, scope: dict[str, Any]) -> PresentedCredential | None:
        found = super().get_raw_credential(scope)
        token = get_headers(scope).get("x-api-token")
        if found is None and token:
            return PresentedCredential(AuthMethod.HEADER, token)
        return found


class NoStaffCredentials(CredentialsMiddleware):
    """Refuses staff accounts on this endpoint."""

    async def get_user(self, scope: dict[str, Any], validated: ValidatedCredential) -> Any:
        user = await super().get_user(scope, validated)
        if user.is_staff:
            raise Refused(Reason.CREDENTIALS_INVALID, "staff may not use this endpoint")
        return user


def gate(credentials_class: type[CredentialsMiddleware]) -> Any:
    return secure_websocket(
        URLRouter([path("ws/info/", info_consumer)]), credentials_class=credentials_class
    )


async def test_an_overridden_raw_credential_hook_authenticates_through_the_gate(
    communicator: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    token = token_for(demo_users["alice"])
    comm = communicator(gate(ApiKeyHeaderCredentials), headers=build_headers(x_api_token=token))
    connected, _ = await comm.connect()
    assert connected
    report = json.loads(await comm.receive_from())
    assert (report["username"], report["auth_method"]) == ("alice", AuthMethod.HEADER.value)
    await comm.disconnect()
    # The stock step does not read that header.
    plain = communicator(gate(CredentialsMiddleware), headers=build_headers(x_api_token=token))
    assert not (await plain.connect())[0]
    await plain.wait()


async def test_an_overridden_get_user_hook_refuses_and_gives_the_slot_back(
    communicator: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    caplog: pytest.LogCaptureFixture,
    redis_client: Any,
) -> None:
    from secure_ws.state import key

    admin, alice = demo_users["admin"], demo_users["alice"]
    assert admin.is_staff
    assert not alice.is_staff
    refused = communicator(
        gate(NoStaffCredentials), subprotocols=["secure-ws.v1", f"bearer.{token_for(admin)}"]
    )
    with caplog.at_level(logging.INFO):
        assert not (await refused.connect())[0]
        await refused.wait()
    assert f"reason={Reason.CREDENTIALS_INVALID.value}" in caplog.text
    # The slot the admission call took for the refused handshake was given back.
    assert redis_client.zcard(key("caps", "user", admin.pk)) == 0
    served = communicator(
        gate(NoStaffCredentials), subprotocols=["secure-ws.v1", f"bearer.{token_for(alice)}"]
    )
    assert (await served.connect())[0]
    await served.disconnect()
