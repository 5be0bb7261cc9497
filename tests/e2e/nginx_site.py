"""The shipped nginx site (``deploy/nginx-secure-ws.conf``) rendered and run for a test.

The site file is rendered into a temporary prefix (loopback ports, a certificate made at
test time, temporary log paths) and run with Debian's nginx in the foreground, so the
tests exercise the very directives an operator installs. A missing nginx fails the test.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT, _reachable, free_port

SITE = ROOT / "deploy" / "nginx-secure-ws.conf"

#: The loopback address the site's certificate names and nginx listens on.
NGINX_HOST = "127.0.0.1"

WRAPPER = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 256; }}
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


@dataclass(frozen=True)
class Certificate:
    """A test CA and the server certificate it signed for ``NGINX_HOST``."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca))


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_certificate(prefix: Path) -> Certificate:
    """Write a throw-away CA and a server certificate for ``NGINX_HOST`` it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secure_ws test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NGINX_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(NGINX_HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificate(ca=prefix / "ca.pem", cert=prefix / "cert.pem", key=prefix / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(_pem_key(key))
    return paths


def substitute(text: str, pattern: str, replacement: str) -> str:
    """Replace ``pattern`` (a regex); fail loudly if the site file no longer has it."""
    result, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count, f"deploy/nginx-secure-ws.conf no longer matches {pattern!r}"
    return result


def render_site(
    prefix: Path, *, upstreams: Sequence[int], https_port: int, http_port: int
) -> tuple[Path, Certificate]:
    """Write the shipped site with test paths and ports; return the wrapper and the cert."""
    certificate = write_certificate(prefix)
    (prefix / "static").mkdir()
    servers = "".join(f"\\1server {NGINX_HOST}:{port};\n" for port in upstreams)
    site = SITE.read_text()
    site = substitute(site, r"^(\s*)server 127\.0\.0\.1:8001;\n", servers)
    site = substitute(site, r"^\s*server 127\.0\.0\.1:800[2-9];\n", "")
    site = substitute(site, r"^\s*listen \[::\]:.*\n", "")
    site = substitute(site, r"listen 80;", f"listen {NGINX_HOST}:{http_port};")
    site = substitute(site, r"listen 443 ", f"listen {NGINX_HOST}:{https_port} ")
    site = substitute(site, r"ssl_certificate\s+\S+;", f"ssl_certificate {certificate.cert};")
    site = substitute(
        site, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {certificate.key};"
    )
    site = substitute(site, r"access_log /var/log/nginx/", f"access_log {prefix}/")
    site = substitute(site, r"alias /srv/secure-ws/staticfiles/;", f"alias {prefix}/static/;")
    (prefix / "site.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(WRAPPER.format(prefix=prefix))
    return conf, certificate


def nginx_command(conf: Path, *extra: str) -> list[str]:
    return [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-e", "stderr", *extra]


@dataclass
class Nginx:
    """A running nginx with the shipped site, and what a client needs to reach it."""

    https_port: int
    process: subprocess.Popen[bytes]
    prefix: Path
    certificate: Certificate

    @property
    def origin(self) -> str:
        return f"https://{NGINX_HOST}:{self.https_port}"

    @property
    def wss_url(self) -> str:
        return f"wss://{NGINX_HOST}:{self.https_port}"

    def log(self) -> str:
        return (self.prefix / "nginx.out").read_text(errors="replace")


@contextmanager
def running_nginx(prefix: Path, *, upstreams: Sequence[int], https_port: int) -> Iterator[Nginx]:
    """Run the shipped site in front of ``upstreams`` until the block ends."""
    conf, certificate = render_site(
        prefix, upstreams=upstreams, https_port=https_port, http_port=free_port()
    )
    with (prefix / "nginx.out").open("wb") as out:
        process = subprocess.Popen(nginx_command(conf), stdout=out, stderr=subprocess.STDOUT)
    nginx = Nginx(https_port, process, prefix, certificate)
    try:
        deadline = time.monotonic() + 30
        while not _reachable(NGINX_HOST, https_port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{nginx.log()}")
            time.sleep(0.1)
        yield nginx
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
