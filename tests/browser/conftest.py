"""Fixtures for the browser tests: Debian's chromium driven by Playwright, and helpers.

The browser only talks to real daphne processes (``daphne_server``). Playwright's sync API
keeps an event loop in this thread, so the test's own database work (sessions, audit
queries) runs in a worker thread (:func:`off_loop`), where Django's async-safety check
does not apply and which closes its connection afterwards.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

#: Guards against hangs only (milliseconds); no test asserts how fast anything is.
HANG_GUARD_MS = 30_000

#: Records every Content-Security-Policy violation the page reports, from its first byte.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push({
    directive: event.violatedDirective,
    blocked: event.blockedURI,
    sample: event.sample,
  });
});
"""

T = TypeVar("T")


def off_loop(function: Callable[[], T]) -> T:
    """Run ``function`` (database work) in a worker thread and return its result."""

    def run() -> T:
        from django.db import connections

        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium; a missing chromium fails the test (never a skip)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}; .ci/run installs it with apt")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser: Any) -> Callable[..., Any]:
    """Open a page in a fresh context (its own cookies) that records CSP violations,
    uncaught script errors, and every URL it requests or opens a WebSocket to."""

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 1180, "height": 380})
        context.set_default_timeout(HANG_GUARD_MS)
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        page.page_errors = []
        page.seen_urls = []
        page.on("pageerror", lambda error: page.page_errors.append(str(error)))
        page.on("request", lambda request: page.seen_urls.append(request.url))
        page.on("websocket", lambda socket: page.seen_urls.append(socket.url))
        return page

    return open_page


def csp_violations(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.__cspViolations"))


def side_by_side(page: Any, name: str, *images: Path) -> Path:
    """Compose screenshots into one picture (two browser windows, for the README)."""
    tags = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}">'
        for image in images
    )
    page.set_viewport_size({"width": 1200 * len(images) + 48, "height": 400})
    page.set_content(
        "<style>body{margin:0;padding:16px;background:#d5d9e0;display:flex;gap:16px}"
        "img{width:50%;min-width:0;border-radius:6px;box-shadow:0 2px 8px #0003}</style>" + tags
    )
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
