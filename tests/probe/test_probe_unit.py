"""The probe's registry, throttle, token surgery, redaction, reports and CLI, without a server."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from secure_ws.probe import throttle
from secure_ws.probe import tokens as jwt
from secure_ws.probe.catalog import all_checks, select_checks
from secure_ws.probe.cli import build_parser, config_from_args, execute, public_url
from secure_ws.probe.docs import BEGIN, END, checks_markdown
from secure_ws.probe.model import REDACTED, CheckResult, ProbeConfig, Verdict, redact
from secure_ws.probe.registry import GROUPS
from secure_ws.probe.report import summary, table, to_json, to_junit
from secure_ws.probe.runner import exit_code, run_checks
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

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


# Secrets from flags, files or the environment ---------------------------------------------

SIGNING_KEY = "probe-signing-key-" + "k" * 32


def secret_args(*argv: str) -> list[str]:
    return ["ws://127.0.0.1:9/ws/", *argv]


@pytest.mark.parametrize(
    ("argv", "environ", "token", "signing_key"),
    [
        pytest.param([], {}, None, None, id="none"),
        pytest.param(["--token", TOKEN], {}, TOKEN, None, id="token-flag"),
        pytest.param([], {"WS_PROBE_TOKEN": TOKEN}, TOKEN, None, id="token-env"),
        pytest.param(["--signing-key", SIGNING_KEY], {}, None, SIGNING_KEY, id="key-flag"),
        pytest.param([], {"WS_PROBE_SIGNING_KEY": SIGNING_KEY}, None, SIGNING_KEY, id="key-env"),
        pytest.param(
            ["--token", TOKEN, "--signing-key", SIGNING_KEY],
            {"WS_PROBE_TOKEN": "env-token", "WS_PROBE_SIGNING_KEY": "env-key"},
            TOKEN,
            SIGNING_KEY,
            id="flags-beat-env",
        ),
    ],
)
def test_secrets_come_from_flags_or_the_environment(
    argv: list[str], environ: dict[str, str], token: str | None, signing_key: str | None
) -> None:
    config = config_from_args(build_parser().parse_args(secret_args(*argv)), environ)
    assert (config.token, config.signing_key) == (token, signing_key)


def test_secrets_come_from_files_and_files_beat_the_environment(tmp_path: Path) -> None:
    token_file, key_file = tmp_path / "token", tmp_path / "key"
    token_file.write_text(TOKEN + "\n")  # as `echo "$TOKEN" > file` writes it
    key_file.write_text(f"  {SIGNING_KEY}\r\n")
    args = build_parser().parse_args(
        secret_args("--token-file", str(token_file), "--signing-key-file", str(key_file))
    )
    environ = {"WS_PROBE_TOKEN": "env-token", "WS_PROBE_SIGNING_KEY": "env-key"}
    config = config_from_args(args, environ)
    assert (config.token, config.signing_key) == (TOKEN, SIGNING_KEY)


@pytest.mark.parametrize(
    ("flag", "file_flag"), [("--token", "--token-file"), ("--signing-key", "--signing-key-file")]
)
def test_a_secret_flag_and_its_file_together_are_a_usage_error(
    flag: str, file_flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(secret_args(flag, "x" * 40, file_flag, "/nonexistent"))
    assert exited.value.code == 2
    assert "x" * 40 not in capsys.readouterr().err


@pytest.mark.parametrize("file_flag", ["--token-file", "--signing-key-file"])
def test_a_missing_secret_file_is_a_clean_usage_error(file_flag: str, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(secret_args(file_flag, str(tmp_path / "absent")))
    assert execute(args, out, err) == 2
    assert (
        err.getvalue() == f"error: {file_flag}: cannot read the file (No such file or directory)\n"
    )
    assert out.getvalue() == ""


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\xff\xfe-not-utf-8"])
def test_an_empty_or_binary_secret_file_is_a_usage_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    assert execute(build_parser().parse_args(secret_args("--token-file", str(path))), out, err) == 2
    assert err.getvalue().startswith("error: --token-file: ")


def test_a_secret_path_that_is_no_file_is_a_clean_usage_error(tmp_path: Path) -> None:
    """A directory, or a path through a regular file: the reason, no traceback."""
    regular = tmp_path / "token"
    regular.write_text(TOKEN)
    for path in (tmp_path, regular / "inside"):
        out, err = io.StringIO(), io.StringIO()
        args = build_parser().parse_args(
            secret_args("--token-file", str(path), "--only", "baseline")
        )
        assert execute(args, out, err) == 2
        assert err.getvalue().startswith("error: --token-file: cannot read the file (")
        assert TOKEN not in out.getvalue() + err.getvalue()


def test_a_secret_on_the_command_line_draws_a_warning_without_the_secret() -> None:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["--list", "--token", TOKEN])
    args.list = False
    args.url = "http://not-a-websocket/"  # stops at validation, after the warning
    assert execute(args, out, err) == 2
    assert "warning: --token on the command line" in err.getvalue()
    assert "WS_PROBE_TOKEN" in err.getvalue()
    assert TOKEN not in err.getvalue()


def test_secrets_from_files_and_env_never_reach_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose checks report nothing: the table, JSON and JUnit still carry no secret."""
    from tests.conftest import free_port

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv("WS_PROBE_SIGNING_KEY", SIGNING_KEY)
    json_path, junit_path = tmp_path / "report.json", tmp_path / "report.xml"
    args = build_parser().parse_args(
        [
            f"ws://127.0.0.1:{free_port()}/ws/?token={TOKEN}",
            "--token-file",
            str(token_file),
            "--only",
            "baseline",
            "--only",
            "tokens",
            "--timeout",
            "5",
            "--wait",
            "1",
            "--json",
            str(json_path),
            "--junit-xml",
            str(junit_path),
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    assert execute(args, out, err) == 1  # nothing listens: the baseline fails
    for text in (out.getvalue(), err.getvalue(), json_path.read_text(), junit_path.read_text()):
        assert TOKEN not in text
        assert SIGNING_KEY not in text


def test_management_command_reads_secret_files_too(tmp_path: Path) -> None:
    from django.core.management import call_command

    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(
            "ws_probe", "ws://127.0.0.1:9/ws/", "--token-file", str(tmp_path / "absent"), stderr=err
        )
    assert exited.value.code == 2
    assert "error: --token-file: cannot read the file" in err.getvalue()
