"""Several daphne processes behind the shipped nginx site, and a client from its own address.

:class:`Cluster` is what the multi-process test holds: the processes, the nginx in front
of them, and the client side (``wss://`` sockets and HTTPS requests bound to
:data:`CLIENT_IP`, a loopback address other than nginx's, so that the client IP the
application records can only be the real client's). :func:`audit_rows` reads the audit
trail the processes write, polling under a deadline because the trail is written in
batches.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from secure_ws.codes import APP_SUBPROTOCOL
from tests.conftest import DEMO_PASSWORD, ServerProcess
from tests.e2e.nginx_site import NGINX_HOST, Nginx

#: The client's source address: loopback, but not nginx's (127.0.0.1).
CLIENT_IP = "127.0.0.2"
#: Guards against hangs only.
HANG_GUARD = 20

Row = dict[str, Any]


@dataclass
class Cluster:
    """The daphne processes, the nginx in front of them, and the test database's gate."""

    nginx: Nginx
    servers: list[ServerProcess]
    users: dict[str, Any]
    db_blocker: Any

    def pid_of(self, row: Row) -> int:
        """The pid of the process that wrote an audit row (its ``server`` is host:pid)."""
        return int(str(row["server"]).rsplit(":", 1)[1])

    @property
    def pids(self) -> set[int]:
        return {server.process.pid for server in self.servers}

    def server_with_pid(self, pid: int) -> ServerProcess:
        return next(server for server in self.servers if server.process.pid == pid)

    async def open_socket(
        self, token: str, *, headers: dict[str, str] | None = None
    ) -> ClientConnection:
        """A ``wss://`` socket to ``/ws/files/`` through nginx, from :data:`CLIENT_IP`."""
        return await connect(
            self.nginx.wss_url + "/ws/files/",
            ssl=self.nginx.certificate.client_context(),
            origin=self.nginx.origin,  # type: ignore[arg-type]
            subprotocols=[APP_SUBPROTOCOL, f"bearer.{token}"],  # type: ignore[list-item]
            additional_headers=headers or {},
            proxy=None,
            open_timeout=HANG_GUARD,
            close_timeout=5,
            local_addr=(CLIENT_IP, 0),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """An HTTPS request through nginx from :data:`CLIENT_IP`: status and JSON body."""
        conn = http.client.HTTPSConnection(
            NGINX_HOST,
            self.nginx.https_port,
            context=self.nginx.certificate.client_context(),
            source_address=(CLIENT_IP, 0),
            timeout=HANG_GUARD,
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None

    def log_in(self, username: str) -> dict[str, str]:
        """The demo's login (``/api/token/``): an access and a refresh token."""
        body = json.dumps({"username": username, "password": DEMO_PASSWORD}).encode()
        status, tokens = self.request(
            "POST", "/api/token/", body=body, headers={"Content-Type": "application/json"}
        )
        assert status == 200, tokens
        return dict(tokens)

    def log_out(self, refresh: str) -> int:
        """The demo's logout: blacklist the refresh token (``/api/token/blacklist/``)."""
        status, _ = self.request(
            "POST",
            "/api/token/blacklist/",
            body=json.dumps({"refresh": refresh}).encode(),
            headers={"Content-Type": "application/json"},
        )
        return status

    def upload(self, access: str, folder: str, name: str, content: bytes) -> tuple[int, Any]:
        """Upload a file through the demo's HTTP API (multipart field ``file``)."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request(
            "POST",
            f"/api/folders/{folder}/files/",
            body=body,
            headers={
                "Authorization": f"Bearer {access}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )

    def delete(self, access: str, folder: str, file_id: str) -> int:
        status, _ = self.request(
            "DELETE",
            f"/api/folders/{folder}/files/{file_id}/",
            headers={"Authorization": f"Bearer {access}"},
        )
        return status

    @contextmanager
    def database(self) -> Iterator[None]:
        """Database access for this thread's queries (the servers are module-scoped)."""
        from django.db import connections

        with self.db_blocker.unblock():
            try:
                yield
            finally:
                connections.close_all()

    def rows(self, username: str) -> list[Row]:
        """Every audit row of ``username``, oldest first."""
        from secure_ws.audit.models import ConnectionRecord

        with self.database():
            query = ConnectionRecord.objects.filter(username=username).order_by("opened_at")
            return list(
                query.values("outcome", "reason", "client_ip", "server", "closed_at", "close_code")
            )

    async def audit_rows(
        self, username: str, until: Callable[[list[Row]], bool], what: str
    ) -> list[Row]:
        """Poll ``username``'s audit rows until ``until(rows)``; fail after the hang guard."""
        give_up = time.monotonic() + HANG_GUARD
        while True:
            rows = await asyncio.to_thread(self.rows, username)
            if until(rows):
                return rows
            assert time.monotonic() < give_up, f"audit never showed {what}: {rows}"
            await asyncio.sleep(0.2)

    async def live_pids(self, username: str, count: int) -> list[int]:
        """Wait until ``count`` live connections of ``username`` are recorded; their pids."""
        rows = await self.audit_rows(
            username,
            lambda rows: len(live(rows)) == count,
            f"{count} live connections of {username}",
        )
        return [self.pid_of(row) for row in live(rows)]

    async def all_closed(self, username: str) -> None:
        """Wait until every accepted connection of ``username`` is recorded closed."""
        await self.audit_rows(username, lambda rows: not live(rows), f"{username} all closed")


def live(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row["outcome"] == "accepted" and row["closed_at"] is None]
