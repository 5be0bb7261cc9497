"""The probe's registry, throttle, token surgery, redaction, reports and CLI, without a server."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from secure_ws.probe import throttle
from secure_ws.probe import tokens as jwt
from secure_ws.probe.cli import build_parser, config_from_args, execute, public_url
from secure_ws.probe.docs import BEGIN, END, checks_markdown
from secure_ws.probe.model import REDACTED, CheckResult, ProbeConfig, Verdict, redact
from secure_ws.probe.registry import GROUPS, all_checks, select_checks
from secure_ws.probe.report import summary, table, to_json, to_junit
from secure_ws.probe.runner import exit_code, run_checks
from tests.conftest import ROOT

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJlLXZhbHVlLWhlcmU"


def test_registry_has_at_least_thirty_checks_with_unique_ids_in_known_groups() -> None:
    checks = all_checks()
    ids = [c.id for c in checks]
    assert len(checks) >= 30
    assert len(ids) == len(set(ids))
    for c in checks:
        assert c.group in GROUPS
        assert c.id.split(".")[0] == c.group
        assert c.title
        assert c.rationale
        assert "OWASP" in c.owasp


def test_every_issue_group_is_covered() -> None:
    ids = {c.id for c in all_checks()}
    for required in (
        "auth.no_credentials",
        "tokens.alg_none",
        "tokens.expired",
        "auth.query_string_token",
        "origin.null",
        "origin.userinfo",
        "transport.hsts",
        "handshake.subprotocol_echo",
        "handshake.server_banner",
        "frames.oversized_message",
        "frames.binary",
        "messages.deep_nesting",
        "messages.unknown_type",
        "messages.error_reflection",
        "limits.message_flood",
        "limits.connection_flood",
        "limits.idle_connection",
        "limits.slow_handshake",
        "handshake.compression",
        "close.refusal_hygiene",
    ):
        assert required in ids


def test_only_and_skip_select_by_id_and_group() -> None:
    only = select_checks(only=["origin", "auth.no_credentials"])
    assert {c.group for c in only} == {"origin", "auth"}
    assert [c.id for c in only if c.group == "auth"] == ["auth.no_credentials"]
    skipped = select_checks(skip=["limits"])
    assert not any(c.group == "limits" for c in skipped)
    assert len(skipped) == len(all_checks()) - len(select_checks(only=["limits"]))


def test_a_pattern_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no check matches"):
        select_checks(only=["origin.typo"])


def test_token_bucket_waits_for_refill_beyond_the_burst() -> None:
    clock = [100.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    async def take_many() -> None:
        bucket = throttle.TokenBucket(rate=10, burst=5, clock=lambda: clock[0], sleep=fake_sleep)
        for _ in range(25):
            await bucket.take()

    asyncio.run(take_many())
    # 5 tokens from the burst, 20 more at 10 per second: 2 seconds of waiting.
    assert sum(sleeps) == pytest.approx(2.0)


def test_token_bucket_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        throttle.TokenBucket(rate=0)


def test_forged_tokens_keep_claims_and_change_what_they_should() -> None:
    header, claims = jwt.decode_unverified(jwt.alg_none_token(TOKEN)) or ({}, {})
    assert header["alg"] == "none"
    assert claims["user_id"] == "1"
    assert jwt.alg_none_token(TOKEN).endswith(".")
    tampered = jwt.tampered_token(TOKEN)
    assert tampered is not None
    assert tampered.split(".")[2] == TOKEN.split(".")[2]
    assert (jwt.decode_unverified(tampered) or ({}, {}))[1]["user_id"] == "2"
    expired = jwt.expired_token(TOKEN, "k" * 32)
    exp = (jwt.decode_unverified(expired) or ({}, {}))[1]["exp"]
    assert exp < (jwt.decode_unverified(jwt.alg_none_token(None)) or ({}, {}))[1]["iat"]
    other = jwt.other_alg_token(TOKEN, "k" * 32) or ""
    assert (jwt.decode_unverified(other) or ({}, {}))[0]["alg"] == "HS512"
    assert jwt.other_alg_token(None, None) is None


def test_redaction_removes_secrets_and_anything_jwt_shaped() -> None:
    text = f"token {TOKEN} and key hunter2-key and forged {jwt.alg_none_token(None)}\nline two"
    line = redact(text, ["hunter2-key"])
    assert TOKEN not in line
    assert "hunter2-key" not in line
    assert "\n" not in line
    assert line.count(REDACTED) == 3
    assert len(redact("x" * 1000, [])) <= 200


def _results() -> list[CheckResult]:
    return [
        CheckResult("auth.no_credentials", Verdict.FAIL, "accepted (101)", 0.1),
        CheckResult("origin.null", Verdict.PASS, "refused (HTTP 403)", 0.1),
        CheckResult("tokens.expired", Verdict.SKIP, "needs --signing-key", 0.0),
        CheckResult("limits.slow_handshake", Verdict.WARN, "still open", 8.0),
    ]


def test_reports_carry_every_result() -> None:
    checks = all_checks()
    results = _results()
    assert summary(results) == {"PASS": 1, "FAIL": 1, "WARN": 1, "SKIP": 1}
    text = table(results, checks)
    for r in results:
        assert r.check_id in text
        assert r.evidence in text
    data = json.loads(to_json("ws://x/ws/", "v1", results, checks))
    assert data["schema_version"] == 1
    assert data["protocol"] == "v1"
    assert [r["verdict"] for r in data["results"]] == ["FAIL", "PASS", "SKIP", "WARN"]
    suite = ElementTree.fromstring(to_junit("ws://x/ws/", results, checks))
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["auth.no_credentials"].find("failure") is not None
    assert cases["tokens.expired"].find("skipped") is not None


def test_exit_code_is_non_zero_only_when_a_check_fails() -> None:
    assert exit_code(_results()) == 1
    assert exit_code([r for r in _results() if r.verdict is not Verdict.FAIL]) == 0


def test_a_check_that_raises_or_hangs_becomes_a_redacted_warning() -> None:
    from secure_ws.probe.model import Check

    async def boom(session: object) -> tuple[Verdict, str]:
        raise RuntimeError(f"leaky message {TOKEN}")

    async def hang(session: object) -> tuple[Verdict, str]:
        await asyncio.sleep(3600)
        return Verdict.PASS, ""

    async def leaky(session: object) -> tuple[Verdict, str]:
        return Verdict.FAIL, "saw secret-token-abc in reply"

    checks = [
        Check("auth.boom", "auth", "t", "r", "OWASP", boom),  # type: ignore[arg-type]
        Check("auth.hang", "auth", "t", "r", "OWASP", hang),  # type: ignore[arg-type]
        Check("auth.leaky", "auth", "t", "r", "OWASP", leaky),  # type: ignore[arg-type]
    ]
    config = ProbeConfig(url="ws://127.0.0.1:9/", token="secret-token-abc", timeout=0.05)
    run = asyncio.run(run_checks(config, checks))
    verdicts = {r.check_id: r for r in run.results}
    assert verdicts["auth.boom"].verdict is Verdict.WARN
    assert "RuntimeError" in verdicts["auth.boom"].evidence
    assert TOKEN not in verdicts["auth.boom"].evidence
    assert verdicts["auth.hang"].verdict is Verdict.WARN
    assert "secret-token-abc" not in verdicts["auth.leaky"].evidence


@pytest.mark.parametrize(
    "argv",
    [
        ["http://example.com/"],
        ["ws://x/", "--max-rate", "0"],
        ["ws://x/", "--header", "no-colon"],
        ["ws://x/", "--only", "nothing.here"],
        ["ws://x/", "--wait", "30", "--timeout", "10"],
    ],
)
def test_bad_options_are_a_usage_error(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert execute(build_parser().parse_args(argv), out, err) == 2
    assert err.getvalue().startswith("error:")


def test_config_and_public_url_keep_credentials_out_of_reports() -> None:
    args = build_parser().parse_args(
        ["wss://h/ws/?token=abc", "--header", "X-Key: v1", "--token", "t" * 10]
    )
    config = config_from_args(args)
    assert config.headers == [("X-Key", "v1")]
    assert set(config.secrets()) == {"t" * 10, "v1"}
    assert public_url(config.url) == "wss://h/ws/"


def test_unreachable_target_fails_the_baseline_and_skips_message_checks() -> None:
    from tests.conftest import free_port

    config = ProbeConfig(url=f"ws://127.0.0.1:{free_port()}/ws/", timeout=5)
    run = asyncio.run(run_checks(config, select_checks(only=["baseline", "messages.nan"])))
    verdicts = {r.check_id: r.verdict for r in run.results}
    assert verdicts == {"baseline.connect": Verdict.FAIL, "messages.nan": Verdict.SKIP}


def test_the_probe_package_imports_no_django() -> None:
    code = (
        "import sys, secure_ws.probe.cli, secure_ws.probe;"
        "secure_ws.probe.all_checks();"
        "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def test_docs_list_every_check_as_generated_from_the_registry() -> None:
    text = (ROOT / "docs" / "probe.md").read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == checks_markdown(), (
        "docs/probe.md is out of date: regenerate with python -m secure_ws.probe.docs"
    )


def test_management_command_lists_the_checks() -> None:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("ws_probe", "--list", stdout=out)
    assert all(c.id in out.getvalue() for c in all_checks())
