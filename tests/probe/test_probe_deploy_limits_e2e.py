"""The probe against daphne with the deployed limits (deploy/daphne.env), as ci-probe runs it.

A message over ``--websocket-max-message-size`` never reaches the application: autobahn
refuses it. It used to drop the socket (the client saw 1006, which the probe cannot tell
from a crash); secure_ws has daphne send the 1009 close instead. A half-sent handshake on
the bare app server is the TLS proxy's to bound: a SKIP that names the nginx directive.
"""

from __future__ import annotations

import shlex
from types import SimpleNamespace
from typing import Any

import pytest

from secure_ws.compat import close_instead_of_drop
from secure_ws.probe import ProbeConfig, Verdict, run_probe, select_checks
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def deployed_daphne_limits() -> list[str]:
    for line in (ROOT / "deploy" / "daphne.env").read_text().splitlines():
        if line.startswith("DAPHNE_LIMITS="):
            return shlex.split(line.split("=", 1)[1].strip('"'))
    raise AssertionError("deploy/daphne.env has no DAPHNE_LIMITS")


def test_oversized_messages_get_a_1009_close_not_a_dropped_socket(
    daphne_server: Any, demo_users: dict[str, Any], token_for: Any
) -> None:
    limits = deployed_daphne_limits()
    assert "--websocket-max-message-size" in limits
    server = daphne_server(daphne_args=limits)
    config = ProbeConfig(
        url=f"{server.ws_url}/ws/files/",
        token=token_for(demo_users["alice"]),
        origin=server.origin,
        max_rate=200,
        wait=2,
    )
    checks = select_checks(
        ["baseline", "frames.oversized_message", "frames.fragmented_oversize"], []
    )
    results = {r.check_id: r for r in run_probe(config, checks).results}
    for check_id in ("frames.oversized_message", "frames.fragmented_oversize"):
        assert results[check_id].verdict is Verdict.PASS, results[check_id]
        assert "closed 1009" in results[check_id].evidence
    assert "Traceback" not in server.log()


def test_a_half_sent_handshake_on_the_bare_server_is_a_skip_naming_the_proxy(
    daphne_server: Any,
) -> None:
    server = daphne_server(daphne_args=deployed_daphne_limits())
    config = ProbeConfig(url=f"{server.ws_url}/ws/files/", origin=server.origin, wait=1)
    (result,) = run_probe(config, select_checks(["limits.slow_handshake"], [])).results
    assert result.verdict is Verdict.SKIP, result
    assert "client_header_timeout" in result.evidence


def test_close_instead_of_drop_changes_only_fail_by_drop() -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory

    factory = WebSocketServerFactory()
    factory.setProtocolOptions(allowNullOrigin=True, maxMessagePayloadSize=1234)

    class Server:
        connections: dict[Any, Any] = {}

        def stop(self) -> None: ...

    server = Server()
    server.ws_factory = factory  # type: ignore[attr-defined]

    class Reactor:
        _eventTriggers = {"shutdown": SimpleNamespace(before=[(server.stop, (), {})])}

        def callWhenRunning(self, function: Any) -> None:
            function()

    assert close_instead_of_drop(Reactor())
    assert factory.failByDrop is False
    assert factory.allowNullOrigin is True
    assert factory.maxMessagePayloadSize == 1234
