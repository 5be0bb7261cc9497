"""The JS client (``secure_ws/static/secure_ws/secure-ws.js``) against the Python source of truth.

Its constants are compared with :mod:`secure_ws.codes` so they cannot drift, and its
close-code policy and reconnect behaviour run in Node (the one Playwright ships) against
a fake ``WebSocket``: no browser, no server, deterministic.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from secure_ws.codes import (
    APP_SUBPROTOCOL,
    BEARER_SUBPROTOCOL_PREFIX,
    CloseCode,
    ErrorCode,
    private_close_code,
)

CLIENT = Path(__file__).resolve().parent.parent / "secure_ws/static/secure_ws/secure-ws.js"
SOURCE = CLIENT.read_text()

#: What a client does after each close code (DESIGN.md, "Close codes").
EXPECTED_ACTIONS = {
    CloseCode.NORMAL: "stop",
    CloseCode.GOING_AWAY: "reconnect",
    CloseCode.UNSUPPORTED_DATA: "stop",
    CloseCode.POLICY_VIOLATION: "stop",
    CloseCode.MESSAGE_TOO_BIG: "stop",
    CloseCode.INTERNAL_ERROR: "reconnect",
    CloseCode.TRY_AGAIN_LATER: "reconnect",
    CloseCode.UNAUTHORIZED: "reauth",
    CloseCode.FORBIDDEN: "stop",
    CloseCode.IDLE_TIMEOUT: "idle",
    CloseCode.RATE_LIMITED: "reconnect",
}


def _js_object(name: str) -> dict[str, str]:
    match = re.search(rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);", SOURCE, re.S)
    assert match is not None, f"{name} not found in the client"
    return dict(re.findall(r"^\s*([A-Z_]+): ([^,]+),", match.group(1), re.M))


def test_subprotocol_constants_match_python() -> None:
    assert f'export const APP_SUBPROTOCOL = "{APP_SUBPROTOCOL}";' in SOURCE
    assert f'export const BEARER_SUBPROTOCOL_PREFIX = "{BEARER_SUBPROTOCOL_PREFIX}";' in SOURCE


def test_every_close_code_matches_python() -> None:
    js_codes = {name: int(value) for name, value in _js_object("CloseCode").items()}
    for code in CloseCode:
        assert js_codes.get(code.name) == code.value, code.name


def test_every_error_code_matches_python() -> None:
    js_codes = {name: json.loads(value) for name, value in _js_object("ErrorCode").items()}
    assert js_codes == {code.name: code.value for code in ErrorCode}


def test_client_never_logs_or_puts_a_token_in_a_url() -> None:
    assert "console.log" not in SOURCE
    assert "?token=" not in SOURCE
    assert 'searchParams.set("token"' not in SOURCE


def _node() -> str:
    from playwright._impl._driver import compute_driver_executable

    return str(compute_driver_executable()[0])


def run_node(script: str) -> Any:
    """Run ``script`` as an ES module with the client imported as ``client``; return its JSON."""
    prelude = (
        "globalThis.window = { location: { href: 'http://127.0.0.1:8000/demo/' } };\n"
        f"const client = await import({json.dumps(CLIENT.as_uri())});\n"
    )
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", prelude + script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_close_actions_follow_the_design_including_daphnes_4xxx_stand_ins() -> None:
    codes = sorted({c.value for c in CloseCode} | {private_close_code(c) for c in CloseCode})
    actions = run_node(
        f"console.log(JSON.stringify(Object.fromEntries({json.dumps(codes)}"
        ".map((c) => [c, client.closeAction(c)]))));"
    )
    for code, expected in EXPECTED_ACTIONS.items():
        assert actions[str(code.value)] == expected, code.name
        assert actions[str(private_close_code(code))] == expected, private_close_code(code)
    assert actions == {str(c): actions[str(c)] for c in codes}


FAKE_SERVER = """
const opened = [];
class FakeWebSocket {
  constructor(url, protocols) {
    this.url = url; this.protocols = protocols; this.listeners = {}; this.sent = [];
    opened.push(this);
    setTimeout(() => script(this, opened.length), 0);
  }
  addEventListener(type, callback) { this.listeners[type] = callback; }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.fire("close", { code: code ?? 1000, reason: "" }); }
  accept() { this.protocol = "secure-ws.v1"; this.fire("open", {}); }
  fire(type, event) {
    const cb = this.listeners[type];
    if (type === "close") this.listeners[type] = null;
    if (cb) cb(event);
  }
}
const fresh = [];
const socket = new client.SecureSocket("/ws/files/", {
  WebSocket: FakeWebSocket, initialDelay: 1, maxDelay: 8, stableAfter: 60000,
  getToken: async ({ fresh: isFresh }) => { fresh.push(isFresh); return `tok${fresh.length}`; },
});
const delays = [];
const backoff = socket._backoffDelay.bind(socket);
socket._backoffDelay = (code) => { const d = backoff(code); delays.push(d); return d; };
const done = new Promise((resolve) => socket.on("state", (s) => s === "stopped" && resolve()));
socket.connect();
await done;
console.log(JSON.stringify({
  urls: opened.map((ws) => ws.url),
  protocols: opened.map((ws) => ws.protocols),
  fresh, delays, reconnects: socket.reconnects, state: socket.state,
}));
"""


def test_reconnect_policy_against_a_fake_server() -> None:
    # Opens 1-4: accepted then closed at once with 1011/4011/4429/4013 (backoff, growing);
    # 5: closed 4401 (token expired: a fresh token, no extra wait once stable is unknown);
    # 6: closed 4403 (stop for good).
    script = """
const script = (ws, n) => {
  ws.accept();
  const codes = [1011, 4011, 4429, 4013, 4401, 4403];
  ws.fire("close", { code: codes[n - 1], reason: "" });
};
"""
    result = run_node(script + FAKE_SERVER)
    assert result["state"] == "stopped"
    assert len(result["urls"]) == 6  # stopped after 4403: no seventh attempt
    assert all(url == "ws://127.0.0.1:8000/ws/files/" for url in result["urls"])
    assert result["protocols"][0] == ["secure-ws.v1", "bearer.tok1"]
    # The access token asked for after 4401 is a fresh one; before, the current one.
    assert result["fresh"] == [False, False, False, False, False, True]
    delays = result["delays"]
    # Accept-then-close never resets the backoff: each wait is drawn from a doubling ceiling.
    ceilings = [min(8, 2**attempt) for attempt in range(len(delays))]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True) if d < 5000)
    assert delays[2] >= 5000  # 4429 waits at least rateLimitedDelay


@pytest.mark.parametrize("code", [1000, 1008, 4008, 1003, 4003, 1009, 4009, 4403])
def test_stop_codes_do_not_reconnect(code: int) -> None:
    script = f"""
const script = (ws) => {{ ws.accept(); ws.fire("close", {{ code: {code}, reason: "" }}); }};
"""
    result = run_node(script + FAKE_SERVER)
    assert len(result["urls"]) == 1
    assert result["delays"] == []
