"""Three daphne processes behind the shipped nginx site, over ``wss://``, as deployed.

The ``deploy/`` nginx site (Debian's nginx, a certificate signed at test time by a test CA
the client trusts) terminates TLS in front of three daphne processes started with the
deploy limits; the processes run the demo project with ``REQUIRE_TLS`` on and nginx's
address as the only trusted proxy. Clients connect from 127.0.0.2, so the address nginx
forwards differs from nginx's own. The shipped ``least_conn`` upstream spreads one user's
sockets over the three processes; the audit rows' ``server`` field (host:pid) shows where
each landed. One set of servers serves every test; the SIGKILL test runs last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from secure_ws.codes import CloseCode, Reason
from tests.conftest import DEMO_PASSWORD, ServerProcess, _server_starter, free_port
from tests.e2e.cluster import CLIENT_IP, HANG_GUARD, Cluster, live
from tests.e2e.multiproc_settings import CONNECTION_SLOT_TTL, MAX_CONNECTIONS_PER_USER
from tests.e2e.nginx_site import running_nginx
from tests.e2e.test_deploy import documented_flags
from tests.e2e.test_files_e2e import frame_of_type, subscribe
from tests.reliability.conftest import ping

# The marker makes pytest-django create the test database (the module's fixture needs it);
# each test's own transaction stays empty: the servers and the audit queries use their
# own connections, and the module's users are committed by the fixture.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

SETTINGS = "tests.e2e.multiproc_settings"
PROCESSES = MAX_CONNECTIONS_PER_USER  # one of a user's slots on each process
#: How soon a logout must have closed the user's sockets on every process (seconds; it
#: takes about 0.25 s, HTTP logout included, on a loaded two-core machine).
LOGOUT_DEADLINE = 2
#: Users of their own per test, so that no test's slots or closes touch another's.
EXTRA_USERS = ("dave", "erin")


def seed_users() -> dict[str, Any]:
    """The demo users and folder, plus :data:`EXTRA_USERS`, committed for the servers."""
    with open(os.devnull, "w") as devnull:
        call_command("demo_seed", password=DEMO_PASSWORD, stdout=devnull)
    user_model = get_user_model()
    for username in EXTRA_USERS:
        if not user_model.objects.filter(username=username).exists():
            user_model.objects.create_user(username=username, password=DEMO_PASSWORD)
    return {user.username: user for user in user_model.objects.all()}


@pytest.fixture(scope="module")
def cluster(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three daphne processes behind the shipped nginx; the database is emptied afterwards.

    The users are committed once for the module (a per-test database would flush them
    between tests while the servers live on), so the teardown flushes what the module wrote.
    """
    base = tmp_path_factory.mktemp("multiproc")
    with django_db_blocker.unblock():
        users = seed_users()
    servers: list[ServerProcess] = []
    start = _server_starter(base, "daphne", servers)
    https_port = free_port()
    env = {
        "SECURE_WS_TRUSTED_PROXIES": "127.0.0.1/32",  # nginx, and nothing else
        "SECURE_WS_ALLOWED_ORIGINS": f"https://127.0.0.1:{https_port}",
        "SECURE_WS_REQUIRE_TLS": "1",
        "MEDIA_ROOT": str(base / "media"),
    }

    def start_one(_: int) -> ServerProcess:
        return start(env=env, settings_module=SETTINGS, daphne_args=documented_flags())

    try:
        with ThreadPoolExecutor(PROCESSES) as pool:
            list(pool.map(start_one, range(PROCESSES)))
        prefix = base / "nginx"
        prefix.mkdir()
        ports = [server.port for server in servers]
        with running_nginx(prefix, upstreams=ports, https_port=https_port) as nginx:
            yield Cluster(nginx, servers, users, django_db_blocker)
    finally:
        # SIGKILL: the tests are over, so nothing the processes would flush at a graceful
        # stop is needed, and a graceful stop of three costs seconds of the time budget.
        for server in servers:
            if server.process.poll() is None:
                server.process.kill()
        for server in servers:
            server.process.wait(timeout=10)
        _flush(django_db_blocker)


def _flush(django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


async def spread_sockets(cluster: Cluster, username: str, token: str) -> list[ClientConnection]:
    """Open one socket per process for ``username`` (nginx's ``least_conn`` spreads them)."""
    sockets = [await cluster.open_socket(token) for _ in range(PROCESSES)]
    for conn in sockets:
        await ping(conn)
    pids = await cluster.live_pids(username, PROCESSES)
    assert sorted(pids) == sorted(cluster.pids), "nginx did not spread the sockets"
    return sockets


async def close_all(cluster: Cluster, username: str, sockets: list[ClientConnection]) -> None:
    """Close ``sockets`` and wait until the processes recorded it (their slots are free)."""
    for conn in sockets:
        await conn.close()
    await cluster.all_closed(username)


def outcomes(rows: list[dict[str, Any]]) -> list[str]:
    return [str(row["outcome"]) for row in rows]


def token(cluster: Cluster, username: str) -> str:
    return str(cluster.log_in(username)["access"])


async def test_the_per_user_cap_holds_across_processes(cluster: Cluster) -> None:
    access = await asyncio.to_thread(token, cluster, "alice")
    sockets = await spread_sockets(cluster, "alice", access)

    # Each process holds one of alice's sockets, below the cap on its own: only the count
    # shared in Redis refuses the next one, on whichever process nginx picks.
    with pytest.raises(InvalidStatus) as refused:
        await cluster.open_socket(access)
    assert refused.value.response.status_code == 403
    rows = await cluster.audit_rows(
        "alice",
        lambda rows: any(row["reason"] == Reason.USER_CONNECTION_LIMIT for row in rows),
        "the cap refusal",
    )
    assert outcomes(rows).count("refused") == 1
    await close_all(cluster, "alice", sockets)


async def test_a_logout_closes_the_users_sockets_on_every_process(cluster: Cluster) -> None:
    tokens = await asyncio.to_thread(cluster.log_in, "bob")
    sockets = await spread_sockets(cluster, "bob", tokens["access"])

    logged_out = time.monotonic()
    assert await asyncio.to_thread(cluster.log_out, tokens["refresh"]) == 200
    for conn in sockets:
        remaining = max(0.0, logged_out + LOGOUT_DEADLINE - time.monotonic())
        await asyncio.wait_for(conn.wait_closed(), remaining)
        assert conn.close_code == CloseCode.FORBIDDEN
    rows = await cluster.audit_rows("bob", lambda rows: not live(rows), "bob's sockets closed")
    accepted = [row for row in rows if row["outcome"] == "accepted"]
    assert {row["close_code"] for row in accepted} == {CloseCode.FORBIDDEN}
    # The logged-out session's access token opens nothing any more.
    with pytest.raises(InvalidStatus):
        await cluster.open_socket(tokens["access"])


async def test_a_file_event_reaches_subscribers_on_every_process(cluster: Cluster) -> None:
    access = await asyncio.to_thread(token, cluster, "carol")
    sockets = await spread_sockets(cluster, "carol", access)
    for conn in sockets:
        assert (await subscribe(conn))["type"] == "ack"

    writer = await asyncio.to_thread(token, cluster, "alice")
    status, body = await asyncio.to_thread(
        cluster.upload, writer, "team", "plan.txt", b"the plan\n"
    )
    assert status == 201, body
    for conn in sockets:
        event = await frame_of_type(conn, "file.uploaded", sender="alice")
        assert (event["payload"]["file_id"], event["payload"]["name"]) == (
            body["file_id"],
            "plan.txt",
        )

    status = await asyncio.to_thread(cluster.delete, writer, "team", body["file_id"])
    assert status == 204
    for conn in sockets:
        event = await frame_of_type(conn, "file.deleted", sender="alice")
        assert (event["payload"]["file_id"], event["payload"]["name"]) == (
            body["file_id"],
            "plan.txt",
        )
    await close_all(cluster, "carol", sockets)


async def test_the_audit_row_holds_the_real_client_ip(cluster: Cluster) -> None:
    access = await asyncio.to_thread(token, cluster, "erin")
    # A forged header too: nginx overwrites it with the address it saw.
    conn = await cluster.open_socket(access, headers={"X-Forwarded-For": "6.6.6.6"})
    await ping(conn)
    await conn.close()
    rows = await cluster.audit_rows(
        "erin", lambda rows: len(rows) == 1 and not live(rows), "erin's closed connection"
    )
    # 127.0.0.2 is the client; 127.0.0.1 is nginx, the peer daphne saw.
    assert rows[0]["client_ip"] == CLIENT_IP


async def test_a_killed_process_frees_its_slots_within_the_slot_ttl(cluster: Cluster) -> None:
    """Runs last: it leaves two processes (nginx routes around the dead one)."""
    access = await asyncio.to_thread(token, cluster, "dave")
    sockets = await spread_sockets(cluster, "dave", access)
    victim = cluster.servers[0]
    victim.process.kill()  # SIGKILL: no close, no release, no audit of the close
    victim.process.wait(timeout=10)

    # Right after the kill its slot still counts: two live sockets and a dead one.
    with pytest.raises(InvalidStatus) as refused:
        await cluster.open_socket(access)
    assert refused.value.response.status_code == 403

    # Only the slot's deadline frees it (the live processes' heartbeats keep theirs).
    give_up = time.monotonic() + 3 * CONNECTION_SLOT_TTL + HANG_GUARD
    while True:
        try:
            admitted = await cluster.open_socket(access)
        except InvalidStatus as exc:
            status = exc.response.status_code
        else:
            break
        assert status == 403
        assert time.monotonic() < give_up, "the killed process's slot never expired"
        await asyncio.sleep(0.2)
    await ping(admitted)
    rows = await cluster.audit_rows(
        "dave",
        lambda rows: len(live(rows)) == PROCESSES + 1 and "refused" in outcomes(rows),
        "the refusals and the admitted connection",
    )
    assert cluster.pid_of(live(rows)[-1]) != victim.process.pid
    refusals = {row["reason"] for row in rows if row["outcome"] == "refused"}
    assert refusals == {Reason.USER_CONNECTION_LIMIT}
    for conn in [*sockets, admitted]:
        with contextlib.suppress(Exception):
            await conn.close()
