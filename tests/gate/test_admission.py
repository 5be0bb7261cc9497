"""The admission script against a real Redis: one call per handshake, exact under races."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import pytest
import redis

from secure_ws.codes import Reason
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate import admission, slots
from secure_ws.gate.admission import (
    AdmissionRequest,
    CapRequest,
    ThrottleRequest,
    run_admission,
)
from secure_ws.gate.ticket_store import ticket_key
from secure_ws.gate.tickets import TicketGrant, issue_ticket
from secure_ws.state import LuaScript, close_redis, key
from tests.e2e.gate_asgi import websocket_app
from tests.gate.conftest import ORIGIN, set_gate
from tests.reliability.conftest import PrivateRedis

IP_A = "198.51.100.70"


def caps(user_limit: int = 5, ip_limit: int = 100, ip: str = IP_A) -> CapRequest:
    return CapRequest(uuid.uuid4().hex, key("caps", "ip", ip), user_limit, ip_limit, 60)


async def test_a_ticket_is_spent_exactly_once_under_concurrency(redis_client: Any) -> None:
    ticket = await issue_ticket(TicketGrant(user_id="7", session_id="s-7"), ORIGIN)
    request = AdmissionRequest(ticket_key=ticket_key(ticket), origin=ORIGIN, caps=caps())
    results = await asyncio.gather(*(run_admission(request) for _ in range(40)))
    verdicts = [result.verdict for result in results]
    assert verdicts.count("ok") == 1
    assert verdicts.count("ticket_invalid") == 39
    (winner,) = [result for result in results if result.verdict == "ok"]
    assert winner.ticket_record is not None
    assert '"user_id": "7"' in winner.ticket_record
    # The ticket's user is only known inside the script; its slot is keyed like a token's.
    assert winner.slot is not None
    assert redis_client.zcard(key("caps", "user", "7")) == 1
    await winner.release()
    assert redis_client.zcard(key("caps", "user", "7")) == 0


async def test_a_ticket_from_another_origin_is_spent_and_refused(redis_client: Any) -> None:
    ticket = await issue_ticket(TicketGrant(user_id="8"), ORIGIN)
    request = AdmissionRequest(ticket_key=ticket_key(ticket), origin="https://evil.example")
    assert (await run_admission(request)).verdict == "ticket_invalid"
    assert redis_client.exists(ticket_key(ticket)) == 0


def test_caps_are_exact_under_concurrent_acquires_from_two_event_loops(
    redis_client: Any,
) -> None:
    user, limit, per_loop = uuid.uuid4().hex, 7, 25
    verdicts: list[str] = []
    lock = threading.Lock()

    async def one_loop() -> None:
        try:
            results = await asyncio.gather(
                *(
                    run_admission(AdmissionRequest(user_id=user, caps=caps(user_limit=limit)))
                    for _ in range(per_loop)
                )
            )
        finally:
            await close_redis()
        with lock:
            verdicts.extend(result.verdict for result in results)

    threads = [threading.Thread(target=asyncio.run, args=(one_loop(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(verdicts) == 2 * per_loop
    assert verdicts.count("ok") == limit
    assert verdicts.count("user_cap") == 2 * per_loop - limit
    assert redis_client.zcard(key("caps", "user", user)) == limit


async def test_throttle_bucket_math(redis_client: Any) -> None:
    bucket = key("hs", "198.51.100.71")
    slow = ThrottleRequest(bucket, rate_per_second=1 / 3600, burst=3)
    for _ in range(3):
        assert (await run_admission(AdmissionRequest(throttle=slow))).verdict == "ok"
    with pytest.raises(Refused) as refused:
        await run_admission(AdmissionRequest(throttle=slow))
    assert refused.value.reason is Reason.HANDSHAKE_RATE_LIMITED
    assert float(redis_client.hget(bucket, "tokens")) < 1
    # Refill is elapsed server time x rate, capped at the burst: an hour ago refills it all.
    seconds, micros = redis_client.time()
    redis_client.hset(bucket, mapping={"tokens": "0", "ts": str(seconds + micros / 1e6 - 3600)})
    fast = ThrottleRequest(bucket, rate_per_second=1.0, burst=2)
    assert (await run_admission(AdmissionRequest(throttle=fast))).verdict == "ok"
    assert (await run_admission(AdmissionRequest(throttle=fast))).verdict == "ok"
    assert float(redis_client.hget(bucket, "tokens")) < 1


async def test_a_throttled_handshake_spends_no_ticket_and_takes_no_slot(
    redis_client: Any,
) -> None:
    ticket = await issue_ticket(TicketGrant(user_id="9"), ORIGIN)
    empty = ThrottleRequest(key("hs", "198.51.100.72"), rate_per_second=1 / 3600, burst=1)
    await run_admission(AdmissionRequest(throttle=empty))
    with pytest.raises(Refused):
        await run_admission(
            AdmissionRequest(
                throttle=empty, ticket_key=ticket_key(ticket), origin=ORIGIN, caps=caps()
            )
        )
    assert redis_client.exists(ticket_key(ticket)) == 1
    assert redis_client.zcard(key("caps", "user", "9")) == 0


async def test_revoked_session_takes_no_slot_and_the_generation_is_read(
    redis_client: Any,
) -> None:
    redis_client.set(key("revoked_sid", "gone"), "1")
    redis_client.incrby(key("usergen", "10"), 2)
    revoked = await run_admission(AdmissionRequest(user_id="10", session_id="gone", caps=caps()))
    assert (revoked.verdict, revoked.generation, revoked.slot) == ("revoked", 2, None)
    assert redis_client.zcard(key("caps", "user", "10")) == 0
    live = await run_admission(AdmissionRequest(user_id="10", session_id="live", caps=caps()))
    assert (live.verdict, live.generation) == ("ok", 2)
    await live.release()


def test_the_script_names_the_keys_revocation_and_user_state_write() -> None:
    from secure_ws.gate import userstate
    from secure_ws.sessions import revocation

    assert revocation._session_key("x") == key("revoked_sid", "x")
    assert userstate._generation_key("7") == key("usergen", "7")


async def test_noscript_after_script_flush_recovers(settings: Any) -> None:
    private = PrivateRedis()
    private.start()
    try:
        set_gate(settings, REDIS_URL=private.url)
        client = redis.Redis.from_url(private.url)
        assert (await run_admission(AdmissionRequest(user_id="11", caps=caps()))).verdict == "ok"
        client.script_flush()
        assert not client.script_exists(admission.ADMIT.sha)[0]
        assert (await run_admission(AdmissionRequest(user_id="11", caps=caps()))).verdict == "ok"
        assert client.script_exists(admission.ADMIT.sha)[0]
        client.close()
    finally:
        await close_redis()
        private.stop()


async def test_a_script_error_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "ADMIT", LuaScript("return redis.error_reply('boom')"))
    with pytest.raises(BackendUnavailable):
        await run_admission(AdmissionRequest(user_id="12", caps=caps()))


async def test_the_whole_gate_refuses_when_redis_is_down(
    communicator: Any,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
    token_for: Any,
    demo_users: dict[str, Any],
) -> None:
    set_gate(settings, REDIS_URL="redis://127.0.0.1:1/0")
    token = token_for(demo_users["alice"])
    comm = communicator(websocket_app, subprotocols=["secure-ws.v1", f"bearer.{token}"])
    with caplog.at_level(logging.INFO):
        connected, _ = await comm.connect()
        await comm.wait()
    assert not connected
    assert f"reason={Reason.BACKEND_UNAVAILABLE.value}" in caplog.text


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many commands each pipeline the async clients execute carried."""
    sizes: list[int] = []
    original = redis.asyncio.client.Pipeline.execute

    async def counting(self: Any, *args: Any, **options: Any) -> Any:
        sizes.append(len(self.command_stack))
        return await original(self, *args, **options)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", counting)
    return sizes


async def test_a_close_storm_releases_in_a_few_round_trips(
    redis_client: Any, pipelines: list[int], redis_commands: list[str]
) -> None:
    held = [
        (await run_admission(AdmissionRequest(user_id=f"storm{i}", caps=caps(ip_limit=1000)))).slot
        for i in range(300)
    ]
    assert redis_client.zcard(key("caps", "ip", IP_A)) == 300
    redis_commands.clear()
    await asyncio.gather(*(slot.release() for slot in held if slot is not None))
    assert redis_client.zcard(key("caps", "ip", IP_A)) == 0
    # One slot alone, then the other 299 (598 set members, two script calls) together.
    assert len(pipelines) + redis_commands.count("EVALSHA") <= 3, (pipelines, redis_commands)


async def test_one_heartbeat_round_trip_refreshes_every_slot_even_after_script_flush(
    settings: Any, pipelines: list[int]
) -> None:
    private = PrivateRedis()
    private.start()
    try:
        set_gate(settings, REDIS_URL=private.url)
        client = redis.Redis.from_url(private.url)
        held = [
            (await run_admission(AdmissionRequest(user_id=f"hb{i}", caps=caps(ip_limit=1000)))).slot
            for i in range(300)
        ]
        ip_key = key("caps", "ip", IP_A)
        before = min(score for _, score in client.zrange(ip_key, 0, -1, withscores=True))
        client.script_flush()
        heartbeat = slots.SlotHeartbeat()
        for slot in held:
            assert slot is not None
            heartbeat.slots[slot.slot_id] = slot
        await heartbeat.refresh()
        after = min(score for _, score in client.zrange(ip_key, 0, -1, withscores=True))
        assert after > before
        # The pipeline met NOSCRIPT, loaded the script and went again: two sends, no more.
        assert pipelines == [2, 2]
        client.close()
    finally:
        await close_redis()
        private.stop()


@pytest.fixture
def redis_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands the async Redis clients send, in order (names only)."""
    sent: list[str] = []
    original = redis.asyncio.Redis.execute_command

    async def counting(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(self, *args, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counting)
    return sent


@pytest.mark.parametrize("credential", ["token", "ticket", "anonymous"])
async def test_one_round_trip_per_handshake_and_one_per_close(
    communicator: Any,
    demo_users: dict[str, Any],
    token_for: Any,
    settings: Any,
    redis_commands: list[str],
    pipelines: list[int],
    credential: str,
) -> None:
    set_gate(settings, REQUIRE_AUTHENTICATION=credential != "anonymous")
    alice = demo_users["alice"]
    warm = communicator(websocket_app, subprotocols=["secure-ws.v1", f"bearer.{token_for(alice)}"])
    assert (await warm.connect())[0]
    await warm.disconnect()
    path, subprotocols = "/ws/info/", ["secure-ws.v1"]
    if credential == "token":
        subprotocols.append(f"bearer.{token_for(alice)}")
    elif credential == "ticket":
        path += f"?ticket={await issue_ticket(TicketGrant(str(alice.pk)), ORIGIN)}"
    redis_commands.clear()
    pipelines.clear()
    comm = communicator(websocket_app, path=path, subprotocols=subprotocols)
    assert (await comm.connect())[0]
    assert (redis_commands, pipelines) == (["EVALSHA"], [])
    await comm.disconnect()
    # The release: one script call.
    assert (redis_commands, pipelines) == (["EVALSHA", "EVALSHA"], [])
