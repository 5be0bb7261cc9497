"""A Sentinel fails the master over under traffic: closed while no master, served after.

A real master, replica and Sentinel (:mod:`tests.reliability.sentinel`) and a real daphne
whose channel layer names the Sentinel; ``SECURE_WS`` names no Redis, so the gate's state
(throttle, caps, tickets, user state, revocation channel) follows the channel layer's
entry. While handshakes keep coming, the master is killed with SIGKILL. Until the test lets
the Sentinel promote the replica there is no master, and every handshake must be refused
(fail closed); after the promotion the same daphne process must serve again, and the
connection caps on the new master must count exactly the connections that are open.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from websockets.exceptions import ConnectionClosed, InvalidStatus

from secure_ws.codes import CloseCode, Reason, private_close_code
from secure_ws.exceptions import BackendUnavailable
from secure_ws.sessions import pubsub
from secure_ws.sessions.pubsub import ensure_subscribed
from secure_ws.sessions.registry import get_registry
from secure_ws.sessions.revocation import kick_user
from secure_ws.state import close_redis, key
from tests.conftest import access_token_for
from tests.consumer_helpers import watch
from tests.reliability.conftest import open_client, ping
from tests.reliability.sentinel import SentinelCluster
from tests.reliability.sentinel_settings import MAX_CONNECTIONS_PER_USER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SETTINGS = "tests.reliability.sentinel_settings"
#: How an open connection may end when its process loses the master.
BACKEND_CLOSE_CODES = {
    int(code)
    for base in (CloseCode.INTERNAL_ERROR, CloseCode.TRY_AGAIN_LATER)
    for code in (base, private_close_code(base))
}
REFUSED = {"http 403"} | {f"closed {code}" for code in BACKEND_CLOSE_CODES}
DEADLINE = 30.0  # seconds; a bound against hanging, not a timing assertion


@pytest.fixture
def sentinel_cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    cluster = SentinelCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def handshake(server: Any, token: str) -> str:
    """``"served"`` (accepted, pinged, closed), ``"http <status>"`` or ``"closed <code>"``."""
    try:
        conn = await open_client(server, token)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    try:
        await ping(conn)
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    await conn.close()
    return "served"


async def close_code(conn: Any) -> int | None:
    """Wait for the server to close ``conn``; return its close code."""
    try:
        async with asyncio.timeout(DEADLINE):
            while True:
                await conn.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


@dataclass
class Traffic:
    """Handshakes one after another; each outcome tagged with the phase it started and ended in."""

    server: Any
    token: str
    phase: str = "before"
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)

    async def run(self) -> None:
        while self.phase != "stop":
            started_in = self.phase
            outcome = await handshake(self.server, self.token)
            self.outcomes.append((started_in, self.phase, outcome))
            await asyncio.sleep(0)  # let the test's own steps run between handshakes

    def during(self, phase: str) -> list[str]:
        return [o for start, end, o in self.outcomes if start == end == phase]


def live_slots(cluster: SentinelCluster, port: int, user_id: int) -> int:
    """Slots of ``user_id``'s cap that still count on the Redis at ``port``."""
    with cluster.client(port) as client:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(client.zcount(key("caps", "user", user_id), f"({now_ms}", "+inf"))


async def until(condition: Callable[[], Any], message: str | Callable[[], str]) -> None:
    """Poll ``condition`` (sync, or returning an awaitable) until true, under :data:`DEADLINE`."""
    give_up = time.monotonic() + DEADLINE
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < give_up, message if isinstance(message, str) else message()
        await asyncio.sleep(0.1)


async def test_failover_fails_closed_then_serves_without_restart(
    daphne_server: Any, demo_users: dict[str, Any], sentinel_cluster: SentinelCluster
) -> None:
    cluster = sentinel_cluster
    server = daphne_server(
        settings_module=SETTINGS,
        env={"SECURE_WS_TEST_SENTINEL_PORT": str(cluster.sentinel_port)},
    )
    alice, bob, carol = (demo_users[name] for name in ("alice", "bob", "carol"))
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)
    traffic = Traffic(server, access_token_for(carol))

    # Before: alice at her cap and bob connected, through the master the Sentinel names.
    held = [await open_client(server, t) for t in [alice_token] * MAX_CONNECTIONS_PER_USER]
    held.append(await open_client(server, bob_token))
    for conn in held:
        await ping(conn)
    assert await handshake(server, alice_token) == "http 403"  # the cap counts in Redis
    assert live_slots(cluster, cluster.master_port, alice.id) == MAX_CONNECTIONS_PER_USER
    runner = asyncio.create_task(traffic.run())
    await until(lambda: traffic.during("before"), "no handshake before the failover")

    # No master: killed, and the replica may not be promoted yet.
    cluster.kill_master()
    traffic.phase = "no master"
    codes = await asyncio.gather(*(close_code(conn) for conn in held))
    await until(
        lambda: asyncio.to_thread(lambda: cluster.master_port_now() is None),
        "the Sentinel never saw the master down",
    )
    await until(lambda: len(traffic.during("no master")) >= 3, "no handshake meanwhile")

    # A new master: the replica is promoted; the same daphne process must serve again.
    traffic.phase = "promoting"
    await asyncio.to_thread(cluster.promote)
    traffic.phase = "after"
    await until(
        lambda: "served" in traffic.during("after"),
        lambda: f"never served again: {traffic.outcomes[-5:]} {server.log()[-2000:]}",
    )
    traffic.phase = "stop"
    await runner

    # No cap slot leaked: alice holds nothing, may take her whole cap again, and no more.
    new_master = cluster.replica_port
    # Her connections closed while Redis could not hear their release: it is retried.
    await until(
        lambda: live_slots(cluster, new_master, alice.id) == 0,
        lambda: f"{live_slots(cluster, new_master, alice.id)} slot(s) of closed connections count",
    )
    again = [await open_client(server, t) for t in [alice_token] * MAX_CONNECTIONS_PER_USER]
    for conn in again:
        await ping(conn)
    over_cap = await handshake(server, alice_token)
    counted = live_slots(cluster, new_master, alice.id)
    await again.pop().close()
    await until(lambda: live_slots(cluster, new_master, alice.id) == 1, "a closed slot counts")
    back_in = await handshake(server, alice_token)
    for conn in again:
        await conn.close()

    print(
        f"\nsentinel failover: held connections closed {codes}; handshakes before "
        f"{_tally(traffic.during('before'))}, without a master "
        f"{_tally(traffic.during('no master'))}, after {_tally(traffic.during('after'))}"
    )
    assert set(codes) <= BACKEND_CLOSE_CODES, codes
    assert set(traffic.during("before")) == {"served"}
    assert set(traffic.during("no master")) <= REFUSED, traffic.during("no master")
    assert counted == MAX_CONNECTIONS_PER_USER
    assert over_cap == "http 403"
    assert back_in == "served"
    assert server.process.poll() is None, "daphne died"
    log = server.log()
    assert "Exception inside application" not in log
    assert all(t not in log for t in (alice_token, bob_token, traffic.token))


def _tally(outcomes: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


async def test_the_subscription_follows_a_master_that_moved_under_it(
    sentinel_cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription left on a former master would miss every revocation: it fails closed."""
    monkeypatch.setattr(pubsub, "HEALTH_INTERVAL", 0.2)
    cluster = sentinel_cluster
    named = {k: v for k, v in settings.SECURE_WS.items() if k != "REDIS_URL"}
    await close_redis()
    with override_settings(SECURE_WS={**named, "REDIS_HOST": cluster.host_entry}):
        try:
            held = await watch(user_id=1)
            await asyncio.to_thread(cluster.switch_quietly)
            ended = await held.ended(wait=DEADLINE)
            get_registry().remove(held)

            async def subscribed() -> bool:
                try:
                    await ensure_subscribed()
                except BackendUnavailable:
                    return False
                return True

            await until(subscribed, "never subscribed on the new master")
            fresh = await watch(user_id=2)
            await kick_user(2)  # published on the master the Sentinel names now
            revoked = await fresh.ended(wait=DEADLINE)
            get_registry().remove(fresh)
        finally:
            await close_redis()
    assert ended == (CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)
    assert revoked == (CloseCode.FORBIDDEN, Reason.REVOKED)
