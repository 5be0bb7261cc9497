"""The Content-Security-Policy built from SECURE_WS, on django-csp (5.2) and Django 6, and the
demo's real response headers."""

from __future__ import annotations

import re
from importlib import import_module

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client, RequestFactory
from django.utils.module_loading import import_string

from secure_ws.headers import (
    BUILTIN_CSP_MIDDLEWARE,
    DJANGO_CSP_MIDDLEWARE,
    build_directives,
    csp_context_processor,
    csp_middleware,
    csp_settings,
    django_csp_config,
    secure_csp,
    uses_builtin_csp,
    websocket_sources,
)

ORIGINS = {"ALLOWED_ORIGINS": ["https://app.example.com", "https://*.example.com:8443"]}


def render_policy(setting_value: dict) -> str:
    """Render a policy the way the running Django's CSP middleware does."""
    if uses_builtin_csp():
        from django.utils.csp import build_policy

        return build_policy(setting_value, nonce="n0nce")
    from csp.utils import build_policy, default_config

    return build_policy(config=default_config(setting_value["DIRECTIVES"]), nonce="n0nce")


def directive(policy: str, name: str) -> list[str]:
    for part in policy.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    raise AssertionError(f"{name} missing from {policy!r}")


def test_https_origins_become_exact_wss_sources() -> None:
    sources = websocket_sources(
        ["https://app.example.com", "https://App.Example.com:443/", "https://*.example.com:8443"]
    )
    assert sources == ["wss://app.example.com", "wss://*.example.com:8443"]


def test_http_origins_become_ws_sources_and_junk_is_dropped() -> None:
    sources = websocket_sources(["http://127.0.0.1:8000", "*", "not an origin", "ftp://x"])
    assert sources == ["ws://127.0.0.1:8000"]


def test_without_allowed_origins_hosts_and_csrf_origins_are_used() -> None:
    sources = websocket_sources(
        None,
        allowed_hosts=["app.example.com", ".example.org", "*"],
        csrf_trusted_origins=["https://admin.example.com"],
        tls_required=True,
    )
    assert sources == [
        "wss://admin.example.com",
        "wss://app.example.com",
        "wss://*.example.org",
    ]


def test_plain_ws_host_sources_only_when_tls_is_not_required() -> None:
    sources = websocket_sources(None, allowed_hosts=["localhost"], tls_required=False)
    assert sources == ["wss://localhost", "ws://localhost"]


def test_extra_connect_src_extends_and_never_replaces_the_websocket_origins() -> None:
    directives = build_directives(
        ["wss://app.example.com"],
        extra={"connect-src": ["https://api.example.com"], "img-src": ["'self'", "data:"]},
    )
    assert directives["connect-src"] == [
        "'self'",
        "wss://app.example.com",
        "https://api.example.com",
    ]
    assert directives["img-src"] == ["'self'", "data:"]


def test_policy_of_the_running_django_is_strict() -> None:
    ((name, value),) = csp_settings(ORIGINS).items()
    assert name == ("SECURE_CSP" if uses_builtin_csp() else "CONTENT_SECURITY_POLICY")
    policy = render_policy(value)
    assert directive(policy, "connect-src") == [
        "'self'",
        "wss://app.example.com",
        "wss://*.example.com:8443",
    ]
    assert directive(policy, "script-src") == ["'self'", "'nonce-n0nce'"]
    assert directive(policy, "frame-ancestors") == ["'none'"]
    assert directive(policy, "object-src") == ["'none'"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


def test_django_csp_shape_is_a_directives_dict_with_its_nonce_sentinel() -> None:
    from csp.constants import NONCE

    config = django_csp_config(ORIGINS)
    assert set(config) == {"DIRECTIVES"}
    assert config["DIRECTIVES"]["script-src"] == ["'self'", NONCE]
    assert config["DIRECTIVES"]["frame-ancestors"] == ["'none'"]


def test_secure_csp_shape_exists_exactly_on_django_6() -> None:
    if not uses_builtin_csp():
        with pytest.raises(ImportError):
            secure_csp(ORIGINS)
        return
    from django.utils.csp import CSP

    value = secure_csp(ORIGINS)
    assert "DIRECTIVES" not in value
    assert value["script-src"] == [CSP.SELF, CSP.NONCE]
    assert value["connect-src"][1:] == ["wss://app.example.com", "wss://*.example.com:8443"]


def test_version_switch() -> None:
    assert uses_builtin_csp((5, 2)) is False
    assert uses_builtin_csp((6, 0)) is True
    assert uses_builtin_csp((6, 1)) is True
    expected = BUILTIN_CSP_MIDDLEWARE if uses_builtin_csp() else DJANGO_CSP_MIDDLEWARE
    assert csp_middleware() == expected


def test_demo_settings_wire_the_middleware_of_the_running_django() -> None:
    assert csp_middleware() in settings.MIDDLEWARE
    assert ("csp" in settings.INSTALLED_APPS) is not uses_builtin_csp()
    processors = settings.TEMPLATES[0]["OPTIONS"]["context_processors"]
    assert csp_context_processor() in processors


def test_template_nonce_matches_the_header_nonce() -> None:
    """{{ csp_nonce }} renders the same nonce the middleware puts in script-src."""
    template = engines["django"].from_string('<script nonce="{{ csp_nonce }}"></script>')

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(template.render(request=request))

    middleware = import_string(csp_middleware())(view)
    response = middleware(RequestFactory().get("/"))
    body_nonce = re.search(r'nonce="([^"]+)"', response.content.decode())
    assert body_nonce is not None
    assert body_nonce[1]
    header = response.headers["Content-Security-Policy"]
    assert f"'nonce-{body_nonce[1]}'" in directive(header, "script-src")


@pytest.mark.parametrize("url", ["/", "/admin/login/"])
def test_demo_html_response_carries_every_security_header(db: None, url: str) -> None:
    response = Client().get(url, secure=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert directive(policy, "frame-ancestors") == ["'none'"]
    assert directive(policy, "connect-src")[0] == "'self'"
    assert "unsafe-inline" not in policy
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "includeSubDomains" in response.headers["Strict-Transport-Security"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_demo_connect_src_lists_the_configured_websocket_origins(monkeypatch) -> None:
    """The demo's settings module turns SECURE_WS_ALLOWED_ORIGINS into connect-src."""
    import sys

    monkeypatch.setenv("SECURE_WS_ALLOWED_ORIGINS", "https://app.example.com,http://127.0.0.1:8000")
    monkeypatch.setenv("SECRET_KEY", "k" * 50)
    monkeypatch.delitem(sys.modules, "project.settings", raising=False)
    demo = import_module("project.settings")
    monkeypatch.delitem(sys.modules, "project.settings")
    value = demo.SECURE_CSP if uses_builtin_csp() else demo.CONTENT_SECURITY_POLICY
    policy = render_policy(value)
    assert directive(policy, "connect-src") == [
        "'self'",
        "wss://app.example.com",
        "ws://127.0.0.1:8000",
    ]


def test_csp_nonce_processor_reads_the_nonce_of_either_middleware() -> None:
    """secure_ws.headers.csp_nonce gives the middleware's nonce, and None without one."""
    from secure_ws.headers import csp_nonce

    seen: dict[str, object] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen.update(csp_nonce(request))
        return HttpResponse(f'<script nonce="{seen["csp_nonce"]}"></script>')

    response = import_string(csp_middleware())(view)(RequestFactory().get("/"))
    nonce = str(seen["csp_nonce"])
    assert len(nonce) >= 16
    assert f"'nonce-{nonce}'" in directive(
        response.headers["Content-Security-Policy"], "script-src"
    )
    assert csp_nonce(RequestFactory().get("/")) == {"csp_nonce": None}


def test_demo_page_scripts_carry_the_nonce_of_its_header(db: None) -> None:
    response = Client().get("/", secure=True)
    nonces = set(re.findall(r'nonce="([^"]+)"', response.content.decode()))
    assert len(nonces) == 1
    policy = response.headers["Content-Security-Policy"]
    assert f"'nonce-{nonces.pop()}'" in directive(policy, "script-src")


@pytest.mark.parametrize(
    "entry",
    ["https://a..b.example", "https://x.example:99999", "https://x.example:0"],
)
def test_csp_sources_and_the_gate_parse_origins_alike(entry: str) -> None:
    """An entry the gate ignores (W004) must not become a CSP ``connect-src`` either."""
    from secure_ws.gate.origin import parse_origin

    assert parse_origin(entry.strip().rstrip("/"), allow_wildcard=True) is None
    assert websocket_sources([entry, "https://good.example"]) == ["wss://good.example"]
