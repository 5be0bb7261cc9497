"""The promises that depend on the server in front of the app, kept on daphne and on uvicorn.

* No token, ticket or password in any line the server process writes: its access log, its
  own loggers, Django's and the gate's, wherever the client put the secret.
* One authority for proxy headers: the gate. uvicorn's proxy headers (on by default) are
  reported once, in the log.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from secure_ws.codes import APP_SUBPROTOCOL
from secure_ws.logging import REDACTED
from tests.conftest import DEMO_PASSWORD, ROOT, UVICORN_ARGS
from tests.e2e.test_gate_e2e import APP, bearer, open_ws, report_of

pytestmark = [pytest.mark.e2e]

#: Guards against hangs only.
HANG_GUARD = 15
#: The start of the gate's warning about uvicorn's proxy headers.
PROXY_WARNING = "uvicorn runs with proxy headers on"


def http(server: Any, path: str, *, body: dict[str, Any] | None = None, **headers: str) -> Any:
    """One HTTP request to ``server``; return ``(status, body)``."""
    request = urllib.request.Request(
        server.http_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json", **headers},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=HANG_GUARD) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, b""


def all_output(directory: Path) -> str:
    """Everything the server processes wrote: stdout and stderr, and log files."""
    return "\n".join(path.read_text(errors="replace") for path in directory.glob("*.log"))


async def handshake(server: Any, path: str, **kwargs: Any) -> bool:
    """Try one handshake on ``path``; return whether it was accepted (then close)."""
    kwargs.setdefault("origin", server.origin)
    kwargs.setdefault("subprotocols", [APP_SUBPROTOCOL])
    try:
        conn = await connect(server.ws_url + path, proxy=None, open_timeout=HANG_GUARD, **kwargs)
    except InvalidStatus:
        return False
    await conn.close()
    return True


def with_access_log(asgi_server: Callable[..., Any], server_kind: str, tmp_path: Path) -> Any:
    """The demo on ``server_kind`` with its access log and its most talkative logging on."""
    return asgi_server(
        env={"SECURE_WS_LOG_LEVEL": "DEBUG"},
        # daphne: the access log to a file of its own (the same AccessLogGenerator that
        # writes to stdout by default), Twisted's log routed to `logging`.
        daphne_args=["-v", "2", "--access-log", str(tmp_path / "daphne-access.log")],
        # uvicorn: the access log is on by default; DEBUG adds every handshake header.
        uvicorn_args=[*UVICORN_ARGS, "--log-level", "debug"],
    )


@pytest.mark.servers
@pytest.mark.usefixtures("demo_users")
async def test_no_token_ticket_or_password_reaches_any_server_output(
    asgi_server: Callable[..., Any], server_kind: str, tmp_path: Path
) -> None:
    server = with_access_log(asgi_server, server_kind, tmp_path)
    status, pair = await asyncio.to_thread(
        http, server, "/api/token/", body={"username": "alice", "password": DEMO_PASSWORD}
    )
    assert status == 200
    pair = json.loads(pair)
    access, refresh = pair["access"], pair["refresh"]
    tickets = []
    for _ in range(3):
        status, body = await asyncio.to_thread(
            http,
            server,
            "/api/ws-ticket/",
            body={},
            Authorization=f"Bearer {access}",
            Origin=server.origin,
        )
        assert status in (200, 201)
        tickets.append(json.loads(body)["ticket"])
    spent, in_path, in_header = tickets

    # Every place a client can put a credential, accepted or refused.
    outcomes = [
        await handshake(server, f"/ws/files/?token={access}"),
        await handshake(server, f"/ws/files/?access_token={access}"),
        await handshake(server, f"/ws/files/?ticket={spent}"),
        await handshake(server, "/ws/files/", subprotocols=bearer(access)),
        await handshake(
            server,
            "/ws/files/",
            origin=None,
            additional_headers={"Authorization": f"Bearer {access}"},
        ),
        await handshake(server, f"/ws/files/{access}/", subprotocols=bearer(access)),
        await handshake(server, f"/ws/files/{in_path}/"),
        await handshake(
            server,
            "/ws/files/",
            additional_headers={
                "Authorization": f"Bearer {in_header}",
                "Cookie": f"sessionid={in_header}",
            },
        ),
    ]
    assert outcomes == [False, False, True, True, True, False, False, False]
    for path in (
        f"/api/folders/?token={access}&ticket={in_path}",
        f"/{access}/",
        f"/?password={DEMO_PASSWORD}&refresh={refresh}",
    ):
        await asyncio.to_thread(http, server, path, Authorization=f"Bearer {access}")

    server.stop()
    output = all_output(tmp_path)
    secrets = [access, refresh, *tickets, DEMO_PASSWORD, access.rsplit(".", 1)[-1]]
    leaked = [secret[:12] for secret in secrets if secret in output]
    assert leaked == []
    # The request lines are still there, with the secrets taken out.
    assert f"/api/folders/?token={REDACTED}&ticket={REDACTED}" in output
    assert f"/ws/files/{REDACTED}/" in output


@pytest.mark.parametrize(
    ("kind", "proxy_headers", "warned"),
    [
        ("uvicorn", True, True),  # uvicorn's default: it rewrites, the gate says so once
        ("uvicorn", False, False),  # --no-proxy-headers, as deploy/uvicorn.sh runs it
        ("daphne", False, False),  # daphne without --proxy-headers, as deployed
    ],
    ids=["uvicorn-default", "uvicorn-no-proxy-headers", "daphne"],
)
async def test_server_proxy_headers_are_reported_once(
    asgi_server: Callable[..., Any],
    demo_users: dict[str, Any],
    token_for: Any,
    kind: str,
    proxy_headers: bool,
    warned: bool,
) -> None:
    args = [arg for arg in UVICORN_ARGS if not proxy_headers or arg != "--no-proxy-headers"]
    server = asgi_server(
        application=APP,
        kind=kind,
        uvicorn_args=args,
        env={"SECURE_WS_TRUSTED_PROXIES": "10.0.0.0/8"},
    )
    token = token_for(demo_users["alice"])
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    seen = []
    for _ in range(3):
        async with await open_ws(
            server, subprotocols=bearer(token), additional_headers=forged
        ) as conn:
            seen.append((await report_of(conn))["client_ip"])
    # With proxy headers on, uvicorn believed the forged hop (from 127.0.0.1) before the gate
    # ran; that is exactly what the warning is about.
    assert seen == (["6.6.6.6"] * 3 if warned else ["127.0.0.1"] * 3)
    server.stop()
    log = server.log()
    assert log.count(PROXY_WARNING) == (1 if warned else 0)
    if warned:
        assert "--no-proxy-headers" in log


def deployed_uvicorn_flags() -> list[str]:
    """The arguments of ``exec uvicorn`` in deploy/uvicorn.sh (the documented command)."""
    script = (ROOT / "deploy" / "uvicorn.sh").read_text().replace("\\\n", " ")
    for line in script.splitlines():
        if line.startswith("exec uvicorn "):
            return shlex.split(line)[3:]  # exec uvicorn APP ...
    raise AssertionError("no `exec uvicorn` line in deploy/uvicorn.sh")


def test_deployed_uvicorn_flags_are_real_and_the_tests_run_them() -> None:
    from uvicorn.main import main

    known = {option for param in main.params for option in (*param.opts, *param.secondary_opts)}
    flags = deployed_uvicorn_flags()
    names = [flag for flag in flags if flag.startswith("--")]
    assert set(names) <= known, set(names) - known
    assert "--no-proxy-headers" in names
    assert flags[flags.index("--lifespan") + 1] == "on"
    # The fixture runs the same flags, but `--lifespan auto` for the test applications
    # without a lifespan route (the demo has one, so `auto` runs it).
    fixture = [flag for flag in UVICORN_ARGS if flag.startswith("--")]
    assert set(fixture) <= set(names)
