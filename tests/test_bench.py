"""The benchmark's own logic: deployment flags, alternating rounds, targets, profile parsing.

The bench runs for minutes and is not part of the suite; these check the parts whose
mistakes would silently change what is measured or reported.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import fanout
from bench.context import BenchContext
from bench.deploy_flags import daphne_flags, uvicorn_flags
from bench.measure import split_level
from bench.profile import OTHER, component_of, parse
from bench.services import COMPARED_STACKS, RedisServer
from bench.targets import TARGETS, evaluate, median_rows


def _flag_value(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


def test_uvicorn_runs_with_the_deploy_scripts_flags() -> None:
    flags = uvicorn_flags()
    assert _flag_value(flags, "--lifespan") == "on"
    assert "--no-proxy-headers" in flags
    assert _flag_value(flags, "--ws") == "websockets-sansio"
    assert "--host" not in flags
    assert "--port" not in flags
    assert not any(flag.endswith(":application") for flag in flags)


def test_uvicorn_flags_follow_a_changed_deploy_script(tmp_path: Path) -> None:
    (tmp_path / "uvicorn.sh").write_text(
        "#!/bin/sh\n# a comment\nexec uvicorn project.asgi:application \\\n"
        '  --host 127.0.0.1 --port "$PORT" \\\n  --ws wsproto \\\n  --lifespan on\n'
    )
    assert uvicorn_flags(tmp_path) == ["--ws", "wsproto", "--lifespan", "on"]


def test_daphne_runs_with_the_deployed_limits() -> None:
    flags = daphne_flags()
    assert _flag_value(flags, "--websocket-max-message-size") == "131072"
    assert _flag_value(flags, "--ping-interval") == "20"


def test_both_servers_have_a_plain_floor() -> None:
    servers = {(stack, server) for _, stack, server, _ in COMPARED_STACKS}
    assert {("floor", "daphne"), ("floor", "uvicorn"), ("secure", "uvicorn")} <= servers


def test_rounds_alternate_the_stack_order() -> None:
    ctx = BenchContext(redis=RedisServer(port=1), tokens=[])
    first = ctx.ordered(COMPARED_STACKS)
    ctx.round = 1
    assert ctx.ordered(COMPARED_STACKS) == list(reversed(first))


def test_connections_are_split_over_clients_without_loss() -> None:
    for level in (1, 999, 20000, 20003):
        assert sum(split_level(level, 4, i) for i in range(4)) == level


def _round(floor: float, secure: float, catm: float) -> dict[str, Any]:
    rows = [
        {"stack": name, "level": 8, "rate": rate, "p99_ms": 10.0, "failures": {"403": 1}}
        for name, rate in (("floor", floor), ("secure", secure), ("catm", catm))
    ]
    return {"handshake": {"levels": [8], "rows": rows}}


def test_a_target_is_the_median_of_per_round_ratios() -> None:
    rounds = [_round(100, 95, 50), _round(100, 50, 50), _round(200, 190, 100)]
    checks = {c["target"]: c for c in evaluate(rounds)}
    floor = checks["handshakes/s secure / floor (daphne, peak)"]
    assert floor["rounds"] == [0.95, 0.5, 0.95]
    assert floor["value"] == 0.95
    assert floor["met"] is True
    catm = checks["handshakes/s secure / CATM SimpleJWT (daphne, peak)"]
    assert catm["value"] == 1.9
    assert catm["met"] is True
    memory = checks["memory/idle conn secure / floor (1,000)"]
    assert math.isnan(memory["value"])
    assert memory["measured"] is False
    assert len(checks) == len(TARGETS)


def test_median_rows_add_up_failures() -> None:
    rounds = [_round(100, 95, 50), _round(300, 50, 50), _round(200, 190, 100)]
    floor = next(r for r in median_rows(rounds, "handshake") if r["stack"] == "floor")
    assert floor["rate"] == 200
    assert floor["rounds"] == 3
    assert floor["failures"] == {"403": 3}


def test_profile_components_and_shares(tmp_path: Path) -> None:
    assert component_of("acquire (secure_ws/gate/caps.py:40)") == "secure_ws (this project)"
    assert component_of("execute (redis/asyncio/client.py:9)") == "redis-py"
    assert component_of("run (twisted/internet/base.py:1)") == "daphne + Twisted + autobahn"
    assert component_of("<module> (<frozen runpy>:198)") == OTHER
    collapsed = tmp_path / "x.collapsed"
    collapsed.write_text(
        "process 1;thread (0x1);run (twisted/internet/base.py:1);"
        "acquire (secure_ws/gate/caps.py:40);execute (redis/asyncio/client.py:9);"
        "write (asyncio/selector_events.py:1) 3\n"
        "process 1;thread (0x1);run (twisted/internet/base.py:1) 1\n"
    )
    profile = parse(collapsed)
    assert profile.samples == 4
    assert profile.by_component["secure_ws (this project)"] == 3
    assert profile.attributed["redis-py"] == 3
    assert profile.attributed["daphne + Twisted + autobahn"] == 1
    assert sum(profile.attributed.values()) == profile.samples


class _FakeSession:
    """Deliveries that arrive in steps and then stop."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = steps
        self.asked = 0

    def arrivals(self) -> int:
        self.asked += 1
        return self.steps[min(self.asked, len(self.steps)) - 1]


def test_fan_out_collects_until_every_delivery_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout.time, "sleep", lambda _: None)
    session = _FakeSession([0, 10, 20, 30])
    fanout._wait_for_deliveries(session, expected=30)  # type: ignore[arg-type]
    assert session.asked == 4


def test_fan_out_stops_waiting_when_deliveries_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10**6))
    monkeypatch.setattr(fanout.time, "sleep", lambda _: None)
    monkeypatch.setattr(fanout.time, "monotonic", lambda: float(next(clock)))
    session = _FakeSession([5, 7])
    fanout._wait_for_deliveries(session, expected=30)  # type: ignore[arg-type]
    assert session.asked < 10
