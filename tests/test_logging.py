"""secure_ws.logging: what the redaction filter takes out of a record, and what it leaves.

The end-to-end proof (real daphne and uvicorn, every place a client can put a secret) is
``tests/e2e/test_server_parity.py``; these pin the record-level contract.
"""

from __future__ import annotations

import io
import logging
import secrets
import sys

import pytest

from secure_ws.logging import (
    REDACTED,
    RedactSecretsFilter,
    install_daphne_access_log_redaction,
    redact,
)

pytestmark = pytest.mark.unit

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoxLCJzaWQiOiJ4In0"
    ".Qk9HVVMtc2lnbmF0dXJlLWJ5dGVzLXRoYXQtYXJlLWxvbmc"
)
TICKET = secrets.token_urlsafe(32)


def record(
    msg: object, *args: object, name: str = "uvicorn.error", **extra: object
) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args or None, None)
    made.__dict__.update(extra)
    return made


def filtered(made: logging.LogRecord) -> logging.LogRecord:
    assert RedactSecretsFilter().filter(made) is True  # never drops a record
    return made


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/ws/files/?token={JWT}", f"/ws/files/?token={REDACTED}"),
        (f"/ws/files/?ticket={TICKET}&x=1", f"/ws/files/?ticket={REDACTED}&x={REDACTED}"),
        (f"/ws/files/?{TICKET}", f"/ws/files/?{REDACTED}"),
        (f"secure-ws.v1, bearer.{JWT}", f"secure-ws.v1, bearer.{REDACTED}"),
        (f"Bearer {TICKET}", f"Bearer {REDACTED}"),
        (f"authorization: Bearer {JWT}", f"authorization: {REDACTED}"),
        ("cookie: sessionid=abc; theme=dark", f"cookie: {REDACTED}"),
        (f"path=/ws/files/{JWT}/ detail=x", f"path=/ws/files/{REDACTED}/ detail=x"),
        (f"path=/ws/files/{TICKET}/", f"path=/ws/files/{REDACTED}/"),
        ('{"password": "hunter2", "ok": 1}', f'{{"password": "{REDACTED}", "ok": 1}}'),
        ("client_secret=s3cr3t csrf_token=abc", f"client_secret={REDACTED} csrf_token={REDACTED}"),
    ],
)
def test_secrets_are_redacted_wherever_they_appear(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # redacting twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "connection refused: reason=token_expired connection_id=0123456789abcdef0123456789abcdef "
        "client_ip=127.0.0.1 path=/ws/files/ detail=ticket unknown, spent, expired or foreign",
        '{"auth_method": "ticket", "token_exp": 1700000000, "event": "refused"}',
        "sha256=" + "c" * 64,
        "Is this a question? Yes.",
    ],
)
def test_ordinary_log_lines_stay_readable(text: str) -> None:
    assert redact(text) == text


def test_kept_query_parameters_stay_readable() -> None:
    assert redact(f"/api/?page=2&token={JWT}", keep_params=["page"]) == (
        f"/api/?page=2&token={REDACTED}"
    )
    made = filtered_with(RedactSecretsFilter(keep_params=["page"]), "GET %s", "/api/?page=2&q=x")
    assert made.getMessage() == f"GET /api/?page=2&q={REDACTED}"


def filtered_with(redactor: RedactSecretsFilter, msg: str, *args: object) -> logging.LogRecord:
    made = record(msg, *args)
    redactor.filter(made)
    return made


def test_uvicorn_access_records_keep_their_five_arguments() -> None:
    """uvicorn's AccessFormatter unpacks ``record.args``: they must stay a 5-tuple."""
    from uvicorn.logging import AccessFormatter

    made = filtered(
        record(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5555",
            "GET",
            f"/api/folders/?token={JWT}",
            "1.1",
            200,
            name="uvicorn.access",
        )
    )
    assert made.args == ("127.0.0.1:5555", "GET", f"/api/folders/?token={REDACTED}", "1.1", 200)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s", use_colors=False)
    assert line.format(made) == f"127.0.0.1:5555 GET /api/folders/?token={REDACTED} HTTP/1.1 200 OK"


def test_mapping_arguments_and_non_string_values_are_redacted() -> None:
    made = filtered(record("%(who)s sent %(what)s", {"who": "alice", "what": f"bearer.{JWT}"}))
    assert made.getMessage() == f"alice sent bearer.{REDACTED}"

    class Credential:
        def __str__(self) -> str:
            return f"Bearer {TICKET}"

    made = filtered(record(Credential()))
    assert TICKET not in made.getMessage()


def test_a_secret_spread_over_arguments_is_redacted_in_the_message() -> None:
    # The websockets library logs each header as ("< %s: %s", name, value).
    made = filtered(record("< %s: %s", "Cookie", "theme=dark; oddname=S3CRET"))
    assert made.getMessage() == f"< Cookie: {REDACTED}"


def test_a_traceback_is_redacted_too() -> None:
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        made = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    filtered(made)
    text = logging.Formatter().format(made)
    assert JWT not in text
    assert "ValueError: bad token" in text


def test_records_without_secrets_are_left_alone() -> None:
    made = record("%s - %s", "a", 1)
    filtered(made)
    assert (made.msg, made.args) == ("%s - %s", ("a", 1))


def test_the_module_name_does_not_shadow_the_standard_library() -> None:
    import secure_ws
    import secure_ws.gate.refusal as refusal
    import secure_ws.logging as ours

    assert ours is not logging
    assert secure_ws.logging is ours
    assert refusal.logging is logging  # other modules' `import logging` is still stdlib's
    assert isinstance(refusal.logger, logging.Logger)


def test_daphnes_access_log_stream_is_redacted() -> None:
    from daphne.access import AccessLogGenerator

    assert install_daphne_access_log_redaction() is True
    assert install_daphne_access_log_redaction() is True  # once, not wrapped twice
    stream = io.StringIO()
    generator = AccessLogGenerator(stream)
    generator(
        "http",
        "complete",
        {
            "path": f"/api/?ticket={TICKET}",
            "status": 200,
            "method": "GET",
            "client": "1.2.3.4:5",
            "size": 3,
        },
    )
    generator("websocket", "connecting", {"path": f"/ws/files/{JWT}/", "client": "1.2.3.4:5"})
    written = stream.getvalue()
    assert TICKET not in written
    assert JWT not in written
    assert f'"GET /api/?ticket={REDACTED}" 200 3' in written
    assert f'"WSCONNECTING /ws/files/{REDACTED}/"' in written
