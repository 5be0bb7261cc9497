"""The shipped nginx site (``deploy/nginx-secure-ws.conf``) is valid and believes no client.

The site file is rendered into a temporary prefix (loopback ports, a throw-away
certificate, temporary log paths) and checked with the real ``nginx -t``; then that nginx
is put in front of a real daphne that trusts it as a proxy, and a client sends its own
``Daphne-Root-Path``, ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``.
nginx is Debian's package (``.ci/run`` installs it); a missing nginx fails these tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import free_port
from tests.e2e.nginx_site import SITE, Nginx, nginx_command, render_site, running_nginx
from tests.e2e.test_gate_e2e import APP

pytestmark = [pytest.mark.e2e]


def test_the_site_passes_nginx_config_test(tmp_path: Path) -> None:
    conf, _ = render_site(
        tmp_path, upstreams=[free_port()], https_port=free_port(), http_port=free_port()
    )
    result = subprocess.run(
        nginx_command(conf, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_every_proxied_location_overwrites_forwarding_headers_and_drops_root_path() -> None:
    directives = re.sub(r"#.*", "", SITE.read_text())
    locations = re.findall(r"location\s+\S+\s*\{(.*?)\n    \}", directives, flags=re.S)
    proxied = [body for body in locations if "proxy_pass" in body]
    assert len(proxied) == 2
    for body in proxied:
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in body
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in body
        assert "proxy_set_header X-Forwarded-Host $host;" in body
        assert 'proxy_set_header Daphne-Root-Path "";' in body
        assert "$proxy_add_x_forwarded_for" not in body  # appends the client's value


@pytest.fixture
def nginx_in_front(
    daphne_server: Callable[..., Any], tmp_path: Path
) -> Iterator[tuple[Nginx, Any]]:
    """The shipped nginx site in front of a daphne that trusts it (loopback) as a proxy."""
    https_port = free_port()
    server = daphne_server(
        application=APP,
        env={
            "SECURE_WS_TRUSTED_PROXIES": "127.0.0.1/32",
            "SECURE_WS_ALLOWED_ORIGINS": f"https://127.0.0.1:{https_port}",
        },
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    with running_nginx(prefix, upstreams=[server.port], https_port=https_port) as nginx:
        yield nginx, server


async def test_behind_the_shipped_nginx_client_forwarding_headers_are_not_believed(
    nginx_in_front: tuple[Nginx, Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    nginx, server = nginx_in_front
    context = nginx.certificate.client_context()
    token = token_for(demo_users["alice"])
    async with connect(
        f"wss://127.0.0.1:{nginx.https_port}/ws/info/",
        ssl=context,
        origin=nginx.origin,  # type: ignore[arg-type]
        subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
        additional_headers={
            "Daphne-Root-Path": "/ws",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "evil.example",
        },
        proxy=None,
        open_timeout=20,
    ) as conn:
        report = json.loads(await asyncio.wait_for(conn.recv(), 20))
    # nginx's own view: the client is the loopback peer nginx saw, over TLS. Had nginx
    # appended to the client's X-Forwarded-For, the gate would see 6.6.6.6; had it passed
    # Daphne-Root-Path on, the gate would have refused the handshake (bad_handshake).
    assert (report["client_ip"], report["scheme"], report["username"]) == (
        "127.0.0.1",
        "wss",
        "alice",
    )
    assert "reason=" not in server.log()
