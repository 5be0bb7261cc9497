"""The shipped nginx site (``deploy/nginx-secure-ws.conf``) is valid and believes no client.

The site file is rendered into a temporary prefix (loopback ports, a throw-away
certificate, temporary log paths) and checked with the real ``nginx -t``; then that nginx
is put in front of a real daphne that trusts it as a proxy, and a client sends its own
``Daphne-Root-Path``, ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``.
nginx is Debian's package (``.ci/run`` installs it); a missing nginx fails these tests.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import ROOT, _reachable, free_port
from tests.e2e.test_gate_e2e import APP

pytestmark = [pytest.mark.e2e]

SITE = ROOT / "deploy" / "nginx-secure-ws.conf"

WRAPPER = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    access_log {prefix}/access.log;
    include {prefix}/site.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail("nginx not found; .ci/run installs Debian's nginx with apt")
    return found


def write_certificate(prefix: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = prefix / "cert.pem", prefix / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def substitute(text: str, pattern: str, replacement: str) -> str:
    """Replace ``pattern`` (a regex); fail loudly if the site file no longer has it."""
    result, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count, f"deploy/nginx-secure-ws.conf no longer matches {pattern!r}"
    return result


def render_site(prefix: Path, *, upstream: int, https_port: int, http_port: int) -> Path:
    """Write the shipped site with test paths and ports; return the wrapper nginx.conf."""
    cert, key = write_certificate(prefix)
    (prefix / "static").mkdir()
    site = SITE.read_text()
    site = substitute(site, r"^(\s*)server 127\.0\.0\.1:8001;", rf"\1server 127.0.0.1:{upstream};")
    site = substitute(site, r"^\s*server 127\.0\.0\.1:800[2-9];\n", "")
    site = substitute(site, r"^\s*listen \[::\]:.*\n", "")
    site = substitute(site, r"listen 80;", f"listen 127.0.0.1:{http_port};")
    site = substitute(site, r"listen 443 ", f"listen 127.0.0.1:{https_port} ")
    site = substitute(site, r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};")
    site = substitute(site, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};")
    site = substitute(site, r"access_log /var/log/nginx/", f"access_log {prefix}/")
    site = substitute(site, r"alias /srv/secure-ws/staticfiles/;", f"alias {prefix}/static/;")
    (prefix / "site.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(WRAPPER.format(prefix=prefix))
    return conf


def nginx_command(conf: Path, *extra: str) -> list[str]:
    return [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-e", "stderr", *extra]


def test_the_site_passes_nginx_config_test(tmp_path: Path) -> None:
    conf = render_site(
        tmp_path, upstream=free_port(), https_port=free_port(), http_port=free_port()
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


@dataclass
class Nginx:
    https_port: int
    process: subprocess.Popen[bytes]
    prefix: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def log(self) -> str:
        return (self.prefix / "nginx.out").read_text(errors="replace")


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
    conf = render_site(prefix, upstream=server.port, https_port=https_port, http_port=free_port())
    with (prefix / "nginx.out").open("wb") as out:
        process = subprocess.Popen(nginx_command(conf), stdout=out, stderr=subprocess.STDOUT)
    nginx = Nginx(https_port, process, prefix)
    try:
        deadline = time.monotonic() + 30
        while not _reachable("127.0.0.1", https_port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{nginx.log()}")
            time.sleep(0.1)
        yield nginx, server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def test_behind_the_shipped_nginx_client_forwarding_headers_are_not_believed(
    nginx_in_front: tuple[Nginx, Any], demo_users: dict[str, Any], token_for: Any
) -> None:
    nginx, server = nginx_in_front
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
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
