"""Gate step 4: the Origin allow-list (CSWSH)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from secure_ws.codes import Reason
from secure_ws.gate.client import ClientAddressMiddleware
from secure_ws.gate.origin import (
    ORIGIN_MISSING_KEY,
    OriginMiddleware,
    OriginPolicy,
    parse_origin,
)
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import HOST, build_headers, set_gate

pytestmark = pytest.mark.unit

#: Origins an attacker might try against an allow-list of https://app.example.com and
#: https://*.example.org.
ORIGIN_TRICKS = [
    "null",
    "https://app.example.com.evil.net",
    "https://evilapp.example.com",
    "https://app.example.co",
    "https://app.example.com@evil.net",
    "https://evil.net@app.example.com",
    "https://evil.net#@app.example.com",
    "http://app.example.com",
    "wss://app.example.com",
    "https://app.example.com:8443",
    "https://app.example.com:99999",
    "https://app.example.com:-1",
    "https://app.example.com:0",
    "https://app.example.com:443abc",
    "https://app.example.com/",
    "https://app.example.com/path",
    " https://app.example.com",
    "https://app.example.com ",
    "https://app.example.com, https://evil.net",
    "https://example.org",
    "https://evilexample.org",
    "https://a.example.org.evil.net",
    "http://a.example.org",
    "https://a.example.org:444",
    "https://*.example.org",
    "https://xn--pp-8ba.example.com",
    "https://app\u2024example.com",
    "file://",
    "",
    "https://" + "a" * 400 + ".example.org",
]


def test_parse_origin_normalises_default_port_and_case() -> None:
    assert str(parse_origin("HTTPS://App.Example.com:443")) == "https://app.example.com"
    assert str(parse_origin("http://127.0.0.1:8000")) == "http://127.0.0.1:8000"
    assert str(parse_origin("http://[::1]:8000")) == "http://[::1]:8000"


@pytest.mark.parametrize("value", ["http://x:99999", "null", "https://a@b", "https://a/b", ""])
def test_parse_origin_rejects_junk_without_exceptions(value: str) -> None:
    assert parse_origin(value) is None


@pytest.mark.parametrize("value", ORIGIN_TRICKS)
def test_origin_trick_is_not_allowed_by_policy(value: str) -> None:
    policy = OriginPolicy.from_entries(
        ["https://app.example.com", "https://*.example.org"], same_origin=False
    )
    origin = parse_origin(value)
    assert origin is None or not policy.allows(origin, scheme="wss", host=HOST)


def test_wildcard_entry_allows_subdomains_on_its_scheme_and_port_only() -> None:
    policy = OriginPolicy.from_entries(["https://*.example.org"], same_origin=False)
    allowed = parse_origin("https://a.b.example.org")
    assert allowed is not None
    assert policy.allows(allowed, scheme="wss", host=HOST)


async def _connects(comm: Any) -> bool:
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    else:
        await comm.wait()
    return bool(connected)


@pytest.mark.parametrize("value", ORIGIN_TRICKS)
async def test_origin_trick_is_refused_at_the_handshake(
    communicator: Any, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    app = ClientAddressMiddleware(OriginMiddleware(info_consumer))
    with caplog.at_level(logging.WARNING):
        assert not await _connects(communicator(app, headers=build_headers(origin=value)))
    assert f"reason={Reason.ORIGIN_REFUSED.value}" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("value", ["https://app.example.com", "https://x.example.org"])
async def test_allowed_origin_is_accepted(communicator: Any, value: str) -> None:
    app = OriginMiddleware(info_consumer)
    assert await _connects(communicator(app, headers=build_headers(origin=value)))


async def test_constructor_allow_list_overrides_settings(communicator: Any) -> None:
    app = OriginMiddleware(info_consumer, allowed_origins=["https://other.example"])
    assert await _connects(communicator(app, headers=build_headers(origin="https://other.example")))
    app = OriginMiddleware(info_consumer, allowed_origins=["https://other.example"])
    assert not await _connects(communicator(app))


async def test_missing_origin_is_recorded_not_refused(communicator: Any) -> None:
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await info_consumer(scope, receive, send)

    assert await _connects(
        communicator(OriginMiddleware(inner), headers=build_headers(origin=None))
    )
    assert seen[ORIGIN_MISSING_KEY] is True


async def test_default_policy_allows_same_origin_and_csrf_trusted_origins(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, ALLOWED_ORIGINS=None)
    settings.CSRF_TRUSTED_ORIGINS = ["https://admin.example.net"]
    app = ClientAddressMiddleware(OriginMiddleware(info_consumer))
    same = build_headers(origin=f"http://{HOST}:8000", host=f"{HOST}:8000")
    assert await _connects(communicator(app, headers=same))
    trusted = build_headers(origin="https://admin.example.net")
    assert await _connects(communicator(app, headers=trusted))
    other_port = build_headers(origin=f"http://{HOST}:9000", host=f"{HOST}:8000")
    assert not await _connects(communicator(app, headers=other_port))
    other_scheme = build_headers(origin=f"https://{HOST}:8000", host=f"{HOST}:8000")
    assert not await _connects(communicator(app, headers=other_scheme))


async def test_check_origin_off_lets_any_origin_through(communicator: Any, settings: Any) -> None:
    set_gate(settings, CHECK_ORIGIN=False)
    app = OriginMiddleware(info_consumer)
    assert await _connects(communicator(app, headers=build_headers(origin="https://evil.net")))
