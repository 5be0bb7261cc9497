"""The demo in a real browser: two users, live events, token expiry, CSWSH and CSP.

Chromium talks to real daphne processes (the demo project behind the full gate, real
Redis, the test PostgreSQL); nothing is mocked. Screenshots go to ``artifacts/screenshots``.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    HANG_GUARD_MS,
    csp_violations,
    off_loop,
    screenshot,
    side_by_side,
)
from tests.conftest import DEMO_PASSWORD, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TEAM = 'article[data-folder="team"]'


@pytest.fixture
def demo(daphne_server: Callable[..., Any], demo_users: dict[str, Any], tmp_path: Path) -> Any:
    """The demo project on daphne, with the demo users, storing uploads under tmp_path."""
    return daphne_server(env={"MEDIA_ROOT": str(tmp_path / "media")})


def log_in(page: Any, server: Any, username: str, path: str = "/") -> None:
    """Log in through the form and wait until the ``team`` folder receives live events."""
    page.goto(server.http_url + path)
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.click("#login-button")
    page.wait_for_selector(f'{TEAM}[data-live="true"]')


def upload_in_page(page: Any, name: str, content: bytes = b"hello from the browser\n") -> None:
    page.set_input_files(
        f"{TEAM} .file-input", files=[{"name": name, "mimeType": "text/plain", "buffer": content}]
    )
    page.click(f"{TEAM} .upload-button")


def upload_over_http(browser: Any, server: Any, username: str, name: str) -> None:
    """Upload a file as ``username`` through the HTTP API, outside any page."""
    context = browser.new_context()
    try:
        api = context.request
        login = api.post(
            server.http_url + "/api/token/",
            data={"username": username, "password": DEMO_PASSWORD},
        )
        assert login.status == 200
        access = login.json()["access"]
        response = api.post(
            server.http_url + "/api/folders/team/files/",
            headers={"Authorization": f"Bearer {access}"},
            multipart={"file": {"name": name, "mimeType": "text/plain", "buffer": b"data\n"}},
        )
        assert response.status == 201, response.text()
    finally:
        context.close()


def event_texts(page: Any) -> list[str]:
    return list(page.locator("#events .event span").all_inner_texts())


def tokens_in_urls(page: Any) -> list[str]:
    """URLs the page requested that carry a JWT (three base64url parts starting eyJ)."""
    return [url for url in page.seen_urls if "eyJ" in url]


def test_alice_uploads_and_carol_sees_it_live_without_reloading(
    demo: Any, new_page: Callable[[], Any]
) -> None:
    alice, carol = new_page(), new_page()
    log_in(alice, demo, "alice")
    log_in(carol, demo, "carol")
    carol_url = carol.url

    upload_in_page(alice, "quarterly-report.txt")

    carol.wait_for_selector(f'{TEAM} .file-name:text-is("quarterly-report.txt")')
    uploaded = '#events .event.uploaded:has-text("alice uploaded quarterly-report.txt")'
    carol.wait_for_selector(uploaded)
    alice.wait_for_selector(uploaded)
    assert carol.url == carol_url  # no reload, no navigation
    side_by_side(
        alice.context.new_page(),
        "demo-two-users",
        screenshot(alice, "demo-alice-uploaded"),
        screenshot(carol, "demo-carol-live"),
    )

    alice.click(f'{TEAM} .file:has-text("quarterly-report.txt") .delete-button')
    deleted = '#events .event.deleted:has-text("alice deleted quarterly-report.txt from team")'
    carol.wait_for_selector(deleted)
    assert carol.locator(f'{TEAM} .file-name:text-is("quarterly-report.txt")').count() == 0

    for page in (alice, carol):
        assert page.locator("#connection-state").get_attribute("data-state") == "open"
        assert page.page_errors == []
        assert csp_violations(page) == []
        assert tokens_in_urls(page) == []


def test_read_only_members_see_no_upload_or_delete_controls(
    demo: Any, browser: Any, new_page: Callable[[], Any]
) -> None:
    carol = new_page()
    log_in(carol, demo, "carol")
    assert carol.locator(f"{TEAM} .access").inner_text() == "read only"
    upload_over_http(browser, demo, "bob", "for-readers.txt")
    carol.wait_for_selector(f'{TEAM} .file-name:text-is("for-readers.txt")')
    # The server would refuse both (403); a reader is not offered them at all.
    assert carol.locator(f"{TEAM} .upload").count() == 0
    assert carol.locator(f"{TEAM} .delete-button").count() == 0
    screenshot(carol, "demo-carol-read-only")
    assert csp_violations(carol) == []


def test_a_refused_upload_is_shown_and_then_fades(demo: Any, new_page: Callable[[], Any]) -> None:
    alice = new_page()
    log_in(alice, demo, "alice")
    alice.set_input_files(
        f"{TEAM} .file-input",
        files=[{"name": "page.html", "mimeType": "text/html", "buffer": b"<p>hi</p>"}],
    )
    alice.click(f"{TEAM} .upload-button")

    error = alice.locator(f"{TEAM} .folder-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("Upload refused: ")
    error.wait_for(state="hidden")  # a transient message goes away by itself
    assert alice.locator(f'{TEAM} .file-name:text-is("page.html")').count() == 0
    assert alice.page_errors == []


def test_the_demo_has_a_favicon(demo: Any, new_page: Callable[[], Any]) -> None:
    page = new_page()
    page.goto(demo.http_url + "/")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None
    assert page.request.get(demo.http_url + icon).status == 200
    # Pages without a link (the admin's) make browsers ask for /favicon.ico.
    fallback = page.request.get(demo.http_url + "/favicon.ico")
    assert (fallback.status, fallback.headers["content-type"]) == (200, "image/svg+xml")
    assert csp_violations(page) == []


@pytest.fixture
def short_token_demo(
    daphne_server: Callable[..., Any], demo_users: dict[str, Any], tmp_path: Path
) -> Any:
    """The demo issuing access tokens that expire after a few seconds."""
    return daphne_server(
        settings_module="tests.browser.short_token_settings",
        env={"MEDIA_ROOT": str(tmp_path / "media")},
    )


def test_short_lived_token_is_refreshed_on_the_open_connection(
    short_token_demo: Any, browser: Any, new_page: Callable[[], Any]
) -> None:
    alice = new_page()
    log_in(alice, short_token_demo, "alice")

    # Outlive the first token twice over: each refresh goes through auth.refresh.
    alice.wait_for_function(
        "() => Number(document.querySelector('#refreshes').textContent) >= 2", timeout=HANG_GUARD_MS
    )
    upload_over_http(browser, short_token_demo, "bob", "after-refresh.txt")
    alice.wait_for_selector('#events .event.uploaded:has-text("bob uploaded after-refresh.txt")')

    assert alice.locator("#reconnects").inner_text() == "0"
    assert alice.locator("#events .event.close").count() == 0
    assert alice.locator("#connection-state").get_attribute("data-state") == "open"
    assert alice.page_errors == []
    assert tokens_in_urls(alice) == []
    assert "eyJ" not in short_token_demo.log()  # no token in the server's log


def test_without_refresh_the_client_reconnects_after_4401(
    short_token_demo: Any, browser: Any, new_page: Callable[[], Any]
) -> None:
    alice = new_page()
    log_in(alice, short_token_demo, "alice", path="/?refresh=off")

    alice.wait_for_function(
        "() => Number(document.querySelector('#reconnects').textContent) >= 1",
        timeout=HANG_GUARD_MS,
    )
    closes = alice.locator("#events .event.close").all_inner_texts()
    assert any("4401" in text and "token_expired" in text for text in closes), closes
    alice.wait_for_selector(f'{TEAM}[data-live="true"]')  # subscribed again

    upload_over_http(browser, short_token_demo, "bob", "after-reconnect.txt")
    alice.wait_for_selector('#events .event.uploaded:has-text("bob uploaded after-reconnect.txt")')
    assert alice.locator("#refreshes").inner_text() == "0"
    assert alice.page_errors == []
    assert tokens_in_urls(alice) == []
    assert "eyJ" not in short_token_demo.log()


def test_demo_page_reports_no_csp_violation_and_the_listener_would_see_one(
    demo: Any, new_page: Callable[[], Any]
) -> None:
    page = new_page()
    response = page.goto(demo.http_url + "/")
    policy = response.headers.get("content-security-policy", "")
    assert "'nonce-" in policy
    assert "'unsafe-inline'" not in policy
    log_in(page, demo, "alice")
    assert csp_violations(page) == []

    # The same listener catches a violation when there is one (a foreign image).
    page.evaluate(
        "() => { const img = document.createElement('img');"
        " img.src = 'http://192.0.2.1/pixel.png'; document.body.append(img); }"
    )
    page.wait_for_function("() => window.__cspViolations.length > 0")
    assert [v["directive"] for v in csp_violations(page)] == ["img-src"]


ATTACK_PAGE = b"""<!doctype html>
<title>cute cats</title>
<script>
function attempt(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ["secure-ws.v1"]);
    ws.onopen = () => { resolve({ opened: true }); ws.close(); };
    ws.onclose = (event) => resolve({ opened: false, code: event.code });
  });
}
window.attack = async (target, ticket) => ({
  cookies: await attempt(target),
  ticket: await attempt(target + "?ticket=" + encodeURIComponent(ticket)),
});
</script>
"""


class _AttackHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(ATTACK_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker_origin() -> Iterator[str]:
    """A second local origin (another port) serving the attacker's page."""
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _AttackHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def _session_for(user: Any) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return str(store.session_key)


def _origin_refusals(port: int) -> list[dict[str, Any]]:
    from secure_ws.audit.models import ConnectionRecord

    rows = ConnectionRecord.objects.filter(
        outcome="refused", reason="origin_refused", origin__endswith=f":{port}"
    )
    return list(rows.values())


OPEN_WITH_COOKIES = """async (url) => new Promise((resolve) => {
  const ws = new WebSocket(url, ["secure-ws.v1"]);
  ws.onopen = () => { resolve({ opened: true, protocol: ws.protocol }); ws.close(); };
  ws.onclose = (event) => resolve({ opened: false, code: event.code });
})"""

TICKET_CLIENT = """async ([username, password]) => {
  const { SecureSocket } = await import(document.body.dataset.clientUrl);
  const login = await fetch("/api/token/", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const { access } = await login.json();
  const socket = new SecureSocket("/ws/files/", {
    ticketUrl: "/api/ws-ticket/", getToken: async () => access, refresh: false,
  });
  socket.connect();
  const pong = await socket.request("ping");
  socket.close();
  const issued = await fetch("/api/ws-ticket/", {
    method: "POST", headers: { Authorization: `Bearer ${access}` },
  });
  return { pong, ticket: (await issued.json()).ticket };
}"""


def test_cross_site_websocket_hijacking_is_refused_and_audited(
    daphne_server: Callable[..., Any],
    demo_users: dict[str, Any],
    new_page: Callable[[], Any],
    attacker_origin: str,
    tmp_path: Path,
) -> None:
    # Worst case: session cookies authenticate WebSockets, and cookies are ambient.
    server = daphne_server(
        settings_module="tests.browser.session_auth_settings",
        env={"MEDIA_ROOT": str(tmp_path / "media")},
    )
    session_key = off_loop(partial(_session_for, demo_users["alice"]))
    victim = new_page()
    cookie = {"name": "sessionid", "value": session_key, "url": server.http_url}
    victim.context.add_cookies([cookie])
    target = server.ws_url + "/ws/files/"

    # From the demo's own origin the victim's cookie alone opens a socket ...
    victim.goto(server.http_url + "/")
    opened = victim.evaluate(OPEN_WITH_COOKIES, target)
    assert opened == {"opened": True, "protocol": "secure-ws.v1"}
    # ... and the JS client's ticket mode works; the victim then holds a fresh ticket.
    result = victim.evaluate(TICKET_CLIENT, ["alice", DEMO_PASSWORD])
    assert result["pong"] == {}
    ticket = result["ticket"]

    # The attacker's page, same browser (same cookies), another origin, the stolen ticket.
    attacker = victim.context.new_page()
    attacker.goto(attacker_origin + "/")
    outcome = attacker.evaluate("([t, k]) => window.attack(t, k)", [target, ticket])
    # A refused handshake is an HTTP 403: the browser never opens the socket (1006).
    refused = {"opened": False, "code": 1006}
    assert outcome == {"cookies": refused, "ticket": refused}

    attacker_port = int(attacker_origin.rsplit(":", 1)[1])
    deadline = time.monotonic() + HANG_GUARD_MS / 1000
    rows = off_loop(partial(_origin_refusals, attacker_port))
    while sum(row["count"] for row in rows) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)  # the daphne process flushes its audit buffer every second
        rows = off_loop(partial(_origin_refusals, attacker_port))
    assert sum(row["count"] for row in rows) >= 2, rows
    assert all(row["origin"] == attacker_origin for row in rows)
    for row in rows:
        assert ticket not in repr(row)
    assert ticket not in server.log()
    assert session_key not in server.log()
