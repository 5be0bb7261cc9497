"""``secure-ws-probe URL``: the black-box WebSocket security scanner's command line.

Works without a Django project. Exit status: 0 when no check failed, 1 when any check
failed, 2 for a usage error. The table goes to stdout (or the JSON report with ``--json``),
progress to stderr.

Secrets (the access token and the signing key) come from a flag, a file or an environment
variable, so they need not sit in the process's command line, where any local user can read
them (``ps``, ``/proc/<pid>/cmdline``) and shells keep them in history. Precedence, first
wins: ``--token`` / ``--token-file`` (mutually exclusive), then ``WS_PROBE_TOKEN``; likewise
``--signing-key`` / ``--signing-key-file``, then ``WS_PROBE_SIGNING_KEY``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from secure_ws.probe.catalog import all_checks, select_checks
from secure_ws.probe.model import Check, CheckResult, ProbeConfig
from secure_ws.probe.report import table, to_json, to_junit
from secure_ws.probe.runner import exit_code, run_probe

#: Environment variables the secrets may come from (after their flags).
TOKEN_ENV = "WS_PROBE_TOKEN"  # noqa: S105
SIGNING_KEY_ENV = "WS_PROBE_SIGNING_KEY"


def build_parser(prog: str = "secure-ws-probe") -> argparse.ArgumentParser:
    """The argument parser shared by the console script and ``manage.py ws_probe``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Probe a WebSocket endpoint for common security weaknesses "
        "(OWASP WebSocket cheat sheet). Only probe endpoints you are allowed to test.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the probe's options to ``parser``."""
    parser.add_argument("url", nargs="?", help="ws:// or wss:// endpoint")
    creds = parser.add_argument_group("credentials (never printed)")
    token = creds.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help=f"access token of a legitimate user (visible in the process list: prefer "
        f"--token-file or {TOKEN_ENV})",
    )
    token.add_argument("--token-file", metavar="FILE", help="read the access token from FILE")
    creds.add_argument(
        "--token-via",
        choices=("subprotocol", "header"),
        default="subprotocol",
        help="present --token as a bearer.<token> subprotocol (browser way, default) "
        "or as an Authorization: Bearer header",
    )
    creds.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra handshake header"
    )
    creds.add_argument(
        "--subprotocol", action="append", default=[], help="extra subprotocol to offer"
    )
    creds.add_argument("--ticket-url", help="URL that issues one-time tickets (POST)")
    key = creds.add_mutually_exclusive_group()
    key.add_argument(
        "--signing-key",
        help=f"HMAC key of the target's JWTs, to forge expired/other-alg tokens (visible in "
        f"the process list: prefer --signing-key-file or {SIGNING_KEY_ENV})",
    )
    key.add_argument("--signing-key-file", metavar="FILE", help="read the signing key from FILE")
    target = parser.add_argument_group("origins")
    target.add_argument("--origin", help="origin the site expects (default: from the URL)")
    target.add_argument(
        "--hostile-origin", action="append", default=[], help="extra origin that must be refused"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--only", action="append", default=[], help="check id or group to run")
    run.add_argument("--skip", action="append", default=[], help="check id or group to skip")
    run.add_argument("--timeout", type=float, default=20.0, help="seconds per check (20)")
    run.add_argument(
        "--max-rate",
        type=float,
        default=50.0,
        help="handshakes+messages per second across all connections (50)",
    )
    run.add_argument(
        "--handshake-rate",
        type=float,
        default=None,
        help="handshakes per second at most (default: unlimited until the target throttles "
        "a known-good handshake, then 0.9/s, halved at each further refusal)",
    )
    run.add_argument("--flood-messages", type=int, default=150, help="message flood size (150)")
    run.add_argument("--flood-connections", type=int, default=60, help="connection flood size (60)")
    run.add_argument(
        "--wait", type=float, default=8.0, help="seconds the idle/slow checks wait (8)"
    )
    run.add_argument("--list", action="store_true", help="list the checks and exit")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="JSON report (- = stdout)"
    )
    out.add_argument("--junit-xml", metavar="FILE", help="write a JUnit XML report")
    out.add_argument("--quiet", action="store_true", help="no progress on stderr")


def read_secret(
    value: str | None, path: str | None, env: str, option: str, environ: Mapping[str, str]
) -> str | None:
    """Return a secret from its flag, else its file, else its environment variable.

    File and environment values are stripped of surrounding whitespace (the newline ``echo``
    adds); an empty environment variable counts as unset.

    Raises:
        ValueError: the file cannot be read or is empty. The message names the option and
            the reason, never the file's content.
    """
    if value is not None:
        return value
    if path is not None:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ValueError(f"{option}: cannot read the file ({reason})") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"{option}: the file is not UTF-8 text") from exc
        if not secret:
            raise ValueError(f"{option}: the file is empty")
        return secret
    return environ.get(env, "").strip() or None


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ProbeConfig:
    """Build a :class:`ProbeConfig`, validating bounds.

    Args:
        args: the parsed options.
        environ: where ``WS_PROBE_TOKEN`` and ``WS_PROBE_SIGNING_KEY`` are read (default:
            ``os.environ``).

    Raises:
        ValueError: an option out of range or malformed, or a secret file that cannot be read.
    """
    environ = os.environ if environ is None else environ
    token = read_secret(
        args.token, getattr(args, "token_file", None), TOKEN_ENV, "--token-file", environ
    )
    signing_key = read_secret(
        args.signing_key,
        getattr(args, "signing_key_file", None),
        SIGNING_KEY_ENV,
        "--signing-key-file",
        environ,
    )
    url = str(args.url or "")
    if urllib.parse.urlsplit(url).scheme not in ("ws", "wss"):
        raise ValueError("URL must start with ws:// or wss://")
    headers: list[tuple[str, str]] = []
    for raw in args.header:
        name, sep, value = str(raw).partition(":")
        if not sep or not name.strip():
            raise ValueError("--header takes NAME:VALUE")
        headers.append((name.strip(), value.strip()))
    if not 0 < args.max_rate <= 10000:
        raise ValueError("--max-rate must be in (0, 10000]")
    handshake_rate = getattr(args, "handshake_rate", None)
    if handshake_rate is not None and not 0 < handshake_rate <= 10000:
        raise ValueError("--handshake-rate must be in (0, 10000]")
    if not 0 < args.timeout <= 600:
        raise ValueError("--timeout must be in (0, 600]")
    if not 1 <= args.flood_messages <= 10000 or not 1 <= args.flood_connections <= 1000:
        raise ValueError("flood sizes must be in [1, 10000] messages and [1, 1000] connections")
    if not 0 < args.wait < args.timeout:
        raise ValueError("--wait must be positive and below --timeout")
    return ProbeConfig(
        url=url,
        token=token,
        token_via=args.token_via,
        headers=headers,
        subprotocols=list(args.subprotocol),
        ticket_url=args.ticket_url,
        origin=args.origin,
        hostile_origins=list(args.hostile_origin),
        signing_key=signing_key,
        timeout=args.timeout,
        max_rate=args.max_rate,
        flood_messages=args.flood_messages,
        flood_connections=args.flood_connections,
        wait=args.wait,
        handshake_rate=handshake_rate,
    )


def public_url(url: str) -> str:
    """The URL without its query string (which may carry a credential)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _progress(stream: TextIO) -> object:
    def show(index: int, total: int, check: Check, result: CheckResult | None) -> None:
        if result is None:
            stream.write(f"\r[{index:>2}/{total}] {check.id:<32}")
        else:
            stream.write(f"\r[{index:>2}/{total}] {check.id:<32} {result.verdict.value}\n")
        stream.flush()

    return show


def execute(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run the probe for parsed ``args``; return the exit status."""
    if args.list:
        for c in all_checks():
            stdout.write(f"{c.id:<32} {c.title}\n")
        return 0
    for flag, instead in (("token", TOKEN_ENV), ("signing_key", SIGNING_KEY_ENV)):
        if getattr(args, flag, None) is not None:
            option = "--" + flag.replace("_", "-")
            stderr.write(
                f"warning: {option} on the command line is visible to other local users; "
                f"use {option}-file or {instead}\n"
            )
    try:
        config = config_from_args(args)
        checks = select_checks(args.only, args.skip)
    except ValueError as exc:
        stderr.write(f"error: {exc}\n")
        return 2
    progress = None if args.quiet else _progress(stderr)
    run = run_probe(config, checks, progress)  # type: ignore[arg-type]
    url = public_url(config.url)
    report = to_json(url, run.mode, run.results, checks)
    if args.json and args.json != "-":
        Path(args.json).write_text(report + "\n")
    if args.json == "-":
        stdout.write(report + "\n")
    else:
        stdout.write(table(run.results, checks) + "\n")
    if args.junit_xml:
        Path(args.junit_xml).write_text(to_junit(url, run.results, checks) + "\n")
    return exit_code(run.results)


def main(argv: Sequence[str] | None = None, prog: str = "secure-ws-probe") -> int:
    """Console entry point ``secure-ws-probe`` (and the demo's ``manage.py ws_probe``)."""
    args = build_parser(prog).parse_args(argv)
    return execute(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
