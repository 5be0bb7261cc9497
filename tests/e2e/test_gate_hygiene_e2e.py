"""Floods, forged log lines and root paths against real servers, real Redis and PostgreSQL.

* A flood of handshakes that would be refused anyway (a foreign Origin) empties the
  client's handshake bucket like any other: the throttle runs before every check a client
  can fail. The log stays bounded while the audit counts every attempt.
* Control characters in the percent-decoded path and in header values never forge a log
  line and reach the audit table escaped.
* A ``Daphne-Root-Path`` changes routing; it is refused even from a trusted proxy (daphne
  only: uvicorn ignores the header). uvicorn's ``--root-path`` is held to the same rule.

The flood and the control characters run on daphne and on uvicorn (``servers`` marker).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Sum
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.audit.models import ConnectionRecord
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, Reason
from tests.conftest import UVICORN_ARGS
from tests.e2e.test_gate_e2e import APP, raw_handshake

pytestmark = [pytest.mark.e2e]

FLOOD = 40
BURST = 5  # tests/e2e/flood_settings.py
LOG_LINES = 3  # tests/e2e/flood_settings.py
INTERVAL = 10.0  # tests/e2e/flood_settings.py
DEADLINE = 20


def wait_until(predicate: Callable[[], bool], seconds: float = DEADLINE) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def own_prefix() -> dict[str, str]:
    """A fresh Redis key prefix (under the run's), so the test starts with a full bucket."""
    prefix = f"{settings.SECURE_WS['KEY_PREFIX']}-hygiene-{uuid.uuid4().hex[:8]}"
    return {"SECURE_WS_KEY_PREFIX": prefix}


async def refused_with(server: Any, origin: str) -> tuple[str, int | None]:
    """Open a refused handshake; return the reason code and close code close mode sends.

    A throttled handshake stays a plain HTTP 403 in close mode: ``("403", None)``.
    """
    try:
        async with connect(
            server.ws_url + "/ws/info/",
            origin=origin,  # type: ignore[arg-type]
            subprotocols=[APP_SUBPROTOCOL],  # type: ignore[list-item]
            proxy=None,
            open_timeout=DEADLINE,
        ) as conn:
            frame = json.loads(await asyncio.wait_for(conn.recv(), DEADLINE))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(conn.recv(), DEADLINE)
    except InvalidStatus as refused:
        return str(refused.response.status_code), None
    return str(frame["payload"]["code"]), conn.close_code


@pytest.mark.servers
def test_a_bad_origin_flood_is_throttled_logged_in_bounds_and_audited_exactly(
    asgi_server: Callable[..., Any],
) -> None:
    server = asgi_server(
        application=APP, settings_module="tests.e2e.flood_settings", env=own_prefix()
    )

    async def flood() -> list[tuple[str, int | None]]:
        return [await refused_with(server, "https://evil.example") for _ in range(FLOOD)]

    started = time.monotonic()
    results = asyncio.run(flood())
    elapsed = time.monotonic() - started
    throttled = ("403", None)  # the throttle never accepts, whatever REFUSAL_MODE says
    assert results[:BURST] == [(Reason.ORIGIN_REFUSED.value, int(CloseCode.FORBIDDEN))] * BURST
    assert results[BURST:] == [throttled] * (FLOOD - BURST)

    # The log: per reason, at most LOG_LINES lines per 10 s window, then one line with the
    # count of the rest, written when the window ends; lines plus counts are exact.
    expected = {Reason.ORIGIN_REFUSED: BURST, Reason.HANDSHAKE_RATE_LIMITED: FLOOD - BURST}

    def logged_and_counted(reason: Reason) -> tuple[int, int]:
        log = server.log()
        lines = log.count(f"connection refused: reason={reason.value} ")
        counted = sum(
            int(n)
            for n in re.findall(
                rf"\.\.\. and (\d+) more connection refusals with "
                rf"reason={reason.value} in the last 10 s",
                log,
            )
        )
        return lines, counted

    for reason, attempts in expected.items():
        assert wait_until(lambda r=reason, n=attempts: sum(logged_and_counted(r)) == n, 30), (
            reason,
            logged_and_counted(reason),
        )
        lines, _counted = logged_and_counted(reason)
        assert lines <= LOG_LINES * (int(elapsed // INTERVAL) + 1)
    assert logged_and_counted(Reason.HANDSHAKE_RATE_LIMITED)[1] > 0
    assert "Traceback" not in server.log()

    # The audit: every attempt, exactly, however the rows are aggregated.
    def counted(reason: Reason) -> int:
        rows = ConnectionRecord.objects.filter(reason=reason.value)
        return int(rows.aggregate(n=Sum("count"))["n"] or 0)

    assert wait_until(
        lambda: counted(Reason.HANDSHAKE_RATE_LIMITED) + counted(Reason.ORIGIN_REFUSED) >= FLOOD
    )
    server.stop()  # the writer flushes at exit; nothing may be counted twice
    assert counted(Reason.ORIGIN_REFUSED) == BURST
    assert counted(Reason.HANDSHAKE_RATE_LIMITED) == FLOOD - BURST
    assert ConnectionRecord.objects.filter(aggregated=True).exists()


@pytest.mark.servers
def test_control_characters_forge_no_log_line_and_are_stored_escaped(
    asgi_server: Callable[..., Any],
) -> None:
    server = asgi_server(application=APP, env=own_prefix())
    good_origin = b"Origin: " + server.origin.encode()
    bidi_ua = "User-Agent: ua\u202e\u200f".encode()
    # (path, header lines) -> the audit row: (stored path, reason, stored user agent).
    # (autobahn itself answers 400 to a header holding a character str.splitlines() splits
    # on; uvicorn's parser answers 400 to C0 controls and DEL in a header value.)
    cases = [
        # A foreign route part, a good Origin, no credentials: refused, path logged.
        (
            "/ws/info/%0aFORGED%20path%0d%1b[31m%e2%80%a8%e2%80%ae",
            [good_origin, bidi_ua],
            (
                "/ws/info/\\x0aFORGED path\\x0d\\x1b[31m\\u2028\\u202e",
                Reason.CREDENTIALS_MISSING,
                "ua\\u202e\\u200f",
            ),
        ),
        # Bidi controls in the Origin and in the user agent.
        (
            "/ws/info/%0a%0aFORGED%20origin",
            ["Origin: http://evil\u202e.example".encode(), bidi_ua],
            ("/ws/info/\\x0a\\x0aFORGED origin", Reason.ORIGIN_REFUSED, "ua\\u202e\\u200f"),
        ),
    ]
    control_characters = (
        "/ws/info/%0a%0aFORGED%20headers",
        [b"Origin: http://evil\x1b\x07.example", b"User-Agent: ua\x1b[2J\x07\x7fFORGED-UA"],
        (
            "/ws/info/\\x0a\\x0aFORGED headers",
            Reason.ORIGIN_REFUSED,
            "ua\\x1b[2J\\x07\\x7fFORGED-UA",
        ),
    )
    if server.expect.rejects_control_characters_in_headers:
        path, lines, _row = control_characters
        status = raw_handshake(server.port, lines, path=path)
        assert status.split(b" ")[1] == b"400", (path, status)
    else:
        cases.append(control_characters)
    for path, lines, _row in cases:
        status = raw_handshake(server.port, lines, path=path)
        assert status.split(b" ")[1] == b"403", (path, status)

    refused = ConnectionRecord.objects.filter(outcome="refused")
    assert wait_until(lambda: refused.count() >= len(cases))
    # Whatever the server writes (its own lines, the gate's, the audit's): no forged line.
    log = server.log()
    assert log.count("connection refused:") == len(cases)
    for line in log.splitlines():
        assert not line.startswith("FORGED"), line
    for raw in ("\x1b", "\x07", "\x7f", "\u2028", "\u202e", "\u200f"):
        assert raw not in log
    assert "path=/ws/info/\\x0aFORGED path\\x0d\\x1b[31m\\u2028\\u202e" in log

    rows = {row.path: row for row in refused}
    assert refused.count() == len(cases)
    for _path, _lines, (stored_path, reason, user_agent) in cases:
        row = rows[stored_path]
        assert (row.reason, row.user_agent) == (reason.value, user_agent)
        if reason is Reason.ORIGIN_REFUSED:
            assert row.origin == "<invalid>"  # the raw header is never stored
    stored = json.dumps(list(refused.values()), default=str, ensure_ascii=False)
    assert not any(ch in stored for ch in "\n\r\x1b\x07\x7f\u2028\u202e\u200f")


@pytest.mark.servers("daphne")  # only daphne reads Daphne-Root-Path (SERVER_TRAITS)
def test_a_root_path_is_refused_even_from_a_trusted_proxy(
    asgi_server: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    # Loopback is a trusted proxy here: daphne turns its Daphne-Root-Path into root_path.
    server = asgi_server(
        application=APP, env={**own_prefix(), "SECURE_WS_TRUSTED_PROXIES": "127.0.0.0/8"}
    )
    token = token_for(demo_users["alice"]).encode()
    lines = [
        b"Origin: " + server.origin.encode(),
        b"Sec-WebSocket-Protocol: " + APP_SUBPROTOCOL.encode() + b", bearer." + token,
    ]
    assert raw_handshake(server.port, lines).split(b" ")[1] == b"101"  # the control
    forged = raw_handshake(server.port, [*lines, b"Daphne-Root-Path: /ws"])
    assert forged.split(b" ")[1] == b"403", forged
    log = server.log()
    assert f"reason={Reason.BAD_HANDSHAKE.value}" in log
    assert "root path differs from the configured one" in log


@pytest.mark.servers("uvicorn")
def test_a_server_root_path_is_held_to_the_configured_one(
    asgi_server: Callable[..., Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    # uvicorn's --root-path is its root_path for every request, trusted peer or not; routing
    # would follow it, so the gate accepts only the configured ROOT_PATH ("" by default).
    env = {**own_prefix(), "SECURE_WS_TRUSTED_PROXIES": "127.0.0.0/8"}
    uvicorn_args = [*UVICORN_ARGS, "--root-path", "/app"]
    token = token_for(demo_users["alice"]).encode()

    def status(server: Any) -> bytes:
        lines = [
            b"Origin: " + server.origin.encode(),
            b"Sec-WebSocket-Protocol: " + APP_SUBPROTOCOL.encode() + b", bearer." + token,
        ]
        return raw_handshake(server.port, lines).split(b" ")[1]

    configured = asgi_server(
        application=APP,
        env=env,
        uvicorn_args=uvicorn_args,
        settings_module="tests.e2e.root_path_settings",
    )
    assert status(configured) == b"101"  # the control: ROOT_PATH = "/app"
    unconfigured = asgi_server(application=APP, env=env, uvicorn_args=uvicorn_args)
    assert status(unconfigured) == b"403"
    log = unconfigured.log()
    assert f"reason={Reason.BAD_HANDSHAKE.value}" in log
    assert "root path differs from the configured one" in log
