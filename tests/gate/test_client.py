"""Gate steps 1 and 3: client address, then TLS, Host, version, root path, header hygiene."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import pytest

from secure_ws.codes import Reason
from secure_ws.exceptions import Refused
from secure_ws.gate.client import ClientAddressMiddleware, resolve_client
from secure_ws.gate.transport import TransportMiddleware
from tests.e2e.gate_asgi import info_consumer
from tests.gate.conftest import HOST, ORIGIN, build_headers, set_gate

PROXY = [ipaddress.ip_network("10.0.0.0/8")]


def client_and_transport(trusted_proxies: list[str] | None = None, **transport: Any) -> Any:
    """Steps 1 and 3 as the stack runs them (the throttle between them is tested apart)."""
    return ClientAddressMiddleware(
        TransportMiddleware(info_consumer, **transport), trusted_proxies=trusted_proxies
    )


def test_forwarded_for_from_untrusted_peer_is_ignored() -> None:
    assert resolve_client("198.51.100.9", "1.2.3.4", "https", "ws", PROXY) == (
        "198.51.100.9",
        "ws",
        False,
    )


def test_right_most_untrusted_hop_wins_behind_trusted_proxy() -> None:
    client, scheme, via_proxy = resolve_client(
        "10.0.0.2", "6.6.6.6, 198.51.100.9, 10.0.0.5", "https", "ws", PROXY
    )
    assert (client, scheme, via_proxy) == ("198.51.100.9", "wss", True)


def test_unparsable_forwarded_hop_from_trusted_proxy_is_refused() -> None:
    with pytest.raises(Refused) as caught:
        resolve_client("10.0.0.2", "not-an-ip, 10.0.0.3", None, "ws", PROXY)
    assert caught.value.reason is Reason.BAD_HANDSHAKE


async def _report(comm: Any) -> dict[str, Any]:
    """Connect, expect the handshake to pass; return what the gate put in the scope."""
    assert (await comm.connect())[0]
    report = dict(json.loads(await comm.receive_from()))
    await comm.disconnect()
    return report


async def _refusal(comm: Any) -> tuple[bool, Any]:
    connected, code = await comm.connect()
    await comm.wait()
    return connected, code


async def test_plain_handshake_is_accepted_and_records_the_peer(communicator: Any) -> None:
    comm = communicator(client_and_transport(), client=("198.51.100.9", 1))
    report = await _report(comm)
    assert (report["client_ip"], report["scheme"]) == ("198.51.100.9", "ws")


async def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(
    communicator: Any,
) -> None:
    headers = build_headers(x_forwarded_for="1.2.3.4", x_forwarded_proto="https")
    app = client_and_transport(trusted_proxies=["10.0.0.0/8"])
    comm = communicator(app, headers=headers, client=("198.51.100.9", 1))
    report = await _report(comm)
    assert (report["client_ip"], report["scheme"]) == ("198.51.100.9", "ws")


async def test_trusted_proxy_supplies_client_ip_and_tls(communicator: Any) -> None:
    headers = build_headers(x_forwarded_for="6.6.6.6, 198.51.100.9", x_forwarded_proto="https")
    app = client_and_transport(trusted_proxies=["10.0.0.0/8"], require_tls=True)
    comm = communicator(app, headers=headers, client=("10.1.2.3", 1))
    report = await _report(comm)
    assert (report["client_ip"], report["scheme"]) == ("198.51.100.9", "wss")


async def test_plain_ws_is_refused_when_tls_is_required(communicator: Any) -> None:
    app = client_and_transport(require_tls=True)
    assert (await _refusal(communicator(app)))[0] is False


async def test_tls_is_required_by_default_when_not_debug(communicator: Any, settings: Any) -> None:
    settings.DEBUG = False
    set_gate(settings, REQUIRE_TLS=None)
    assert (await _refusal(communicator(client_and_transport())))[0] is False


async def test_wss_scheme_from_the_server_satisfies_tls(communicator: Any) -> None:
    app = client_and_transport(require_tls=True)
    comm = communicator(app, scheme="wss")
    assert (await comm.connect())[0]
    await comm.disconnect()


async def test_forwarded_proto_from_untrusted_peer_does_not_satisfy_tls(
    communicator: Any,
) -> None:
    app = client_and_transport(require_tls=True)
    comm = communicator(app, headers=build_headers(x_forwarded_proto="https"))
    assert (await _refusal(comm))[0] is False


@pytest.mark.parametrize("host", ["evil.example.net", "app.example.com.evil.net", "", None])
async def test_host_not_in_allowed_hosts_is_refused(
    communicator: Any, caplog: pytest.LogCaptureFixture, host: str | None
) -> None:
    comm = communicator(client_and_transport(), headers=build_headers(host=host))
    with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
        assert (await _refusal(comm))[0] is False
    assert f"reason={Reason.HOST_NOT_ALLOWED.value}" in caplog.text


async def test_allowed_host_with_port_is_accepted(communicator: Any) -> None:
    comm = communicator(client_and_transport(), headers=build_headers(host=f"{HOST}:8443"))
    assert (await comm.connect())[0]
    await comm.disconnect()


async def test_websocket_version_other_than_13_is_refused(communicator: Any) -> None:
    headers = [(b"host", HOST.encode()), (b"origin", ORIGIN.encode())]
    headers.append((b"sec-websocket-version", b"8"))
    comm = communicator(client_and_transport(), headers=headers)
    assert (await _refusal(comm))[0] is False


@pytest.mark.parametrize("name", [b"origin", b"authorization", b"host"])
async def test_duplicate_security_headers_are_refused(
    communicator: Any, caplog: pytest.LogCaptureFixture, name: bytes
) -> None:
    headers = build_headers()
    headers += [(name, b"Bearer x" if name == b"authorization" else ORIGIN.encode())] * 2
    comm = communicator(client_and_transport(), headers=headers)
    with caplog.at_level(logging.WARNING, logger="secure_ws.gate"):
        assert (await _refusal(comm))[0] is False
    assert f"reason={Reason.BAD_HANDSHAKE.value}" in caplog.text


async def test_non_utf8_header_bytes_are_refused_cleanly(
    communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    headers = build_headers(user_agent=b"\xff\xfe\xfa")
    comm = communicator(client_and_transport(), headers=headers)
    with caplog.at_level(logging.WARNING):
        assert (await _refusal(comm))[0] is False
    assert f"reason={Reason.BAD_HANDSHAKE.value}" in caplog.text
    assert "Traceback" not in caplog.text


async def test_client_sent_root_path_is_refused(communicator: Any) -> None:
    comm = communicator(client_and_transport(), root_path="/ws")
    assert (await _refusal(comm))[0] is False


async def test_root_path_from_trusted_proxy_is_refused_by_default(communicator: Any) -> None:
    # A proxy that passes the client's Daphne-Root-Path on makes it the client's choice.
    app = client_and_transport(trusted_proxies=["10.0.0.0/8"])
    comm = communicator(app, root_path="/prefix", client=("10.0.0.9", 1))
    assert (await _refusal(comm))[0] is False


async def test_root_path_from_trusted_proxy_is_honoured_when_opted_in(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, TRUSTED_PROXIES=["10.0.0.0/8"], TRUST_PROXY_ROOT_PATH=True)
    comm = communicator(client_and_transport(), root_path="/prefix", client=("10.0.0.9", 1))
    assert (await comm.connect())[0]
    await comm.disconnect()
    # The opt-in is for trusted proxies only.
    untrusted = communicator(client_and_transport(), root_path="/prefix")
    assert (await _refusal(untrusted))[0] is False


async def test_configured_root_path_setting_is_the_only_one_accepted(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, ROOT_PATH="/app")
    comm = communicator(client_and_transport(), root_path="/app")
    assert (await comm.connect())[0]
    await comm.disconnect()
    for other in ("", "/ws", "/app/ws"):
        refused = communicator(client_and_transport(), root_path=other)
        assert (await _refusal(refused))[0] is False, other


async def test_root_path_defaults_to_force_script_name(communicator: Any, settings: Any) -> None:
    settings.FORCE_SCRIPT_NAME = "/mounted"
    comm = communicator(client_and_transport(), root_path="/mounted")
    assert (await comm.connect())[0]
    await comm.disconnect()
    assert (await _refusal(communicator(client_and_transport())))[0] is False


async def test_expected_root_path_is_accepted(communicator: Any) -> None:
    app = client_and_transport(root_path="/app")
    comm = communicator(app, root_path="/app")
    assert (await comm.connect())[0]
    await comm.disconnect()


async def test_explicit_empty_trusted_proxies_trust_nobody(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, TRUSTED_PROXIES=["10.0.0.0/8"])
    app = client_and_transport(trusted_proxies=[])
    comm = communicator(
        app, headers=build_headers(x_forwarded_for="1.2.3.4"), client=("10.0.0.9", 1)
    )
    assert (await _report(comm))["client_ip"] == "10.0.0.9"


async def test_trusted_proxies_come_from_settings_by_default(
    communicator: Any, settings: Any
) -> None:
    set_gate(settings, TRUSTED_PROXIES=["10.0.0.0/8"])
    app = client_and_transport()
    comm = communicator(
        app, headers=build_headers(x_forwarded_for="1.2.3.4"), client=("10.0.0.9", 1)
    )
    assert (await _report(comm))["client_ip"] == "1.2.3.4"


async def test_the_client_address_step_alone_refuses_nothing_a_client_controls(
    communicator: Any,
) -> None:
    # It runs before the throttle, which must see every attempt: malformed handshakes are
    # refused after it, by the transport step.
    headers = build_headers(user_agent=b"\xff\x1b[2J", host="evil.example")
    headers += [(b"origin", b"https://a.example"), (b"sec-websocket-version", b"8")]
    app = ClientAddressMiddleware(info_consumer)
    assert (await _report(communicator(app, headers=headers, root_path="/x")))["client_ip"]
