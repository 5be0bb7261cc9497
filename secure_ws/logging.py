"""Keep tokens, tickets and passwords out of every log line, whoever writes it.

The gate refuses a credential in the wrong place, but the servers log the request before
the application answers:

* uvicorn logs ``WebSocket /ws/files/?token=eyJ...`` (path *and* query string) through
  ``uvicorn.error``, HTTP request lines with their query strings through ``uvicorn.access``,
  and, at DEBUG, every handshake header through the ``websockets`` protocol (the
  ``Authorization`` header and the ``bearer.<jwt>`` subprotocol included);
* daphne's access log writes HTTP URIs with their query strings and WebSocket paths; it is
  not a ``logging`` logger but a stream (``daphne.access.AccessLogGenerator``);
* Django and the gate log request paths, and a client may put a token in the path itself.

:class:`RedactSecretsFilter` is a :class:`logging.Filter` that rewrites a record so that no
secret survives: every query-string value, JWT-shaped strings (``eyJ...``), ``bearer.<...>``
subprotocol entries, ``Bearer``/``Basic`` credentials, ``Authorization``/``Cookie`` header
values, values of credential-like names (``token=``, ``"password": ...``) and long random
mixed-case strings (tickets are 43 such characters) become ``[redacted]``. It redacts
``record.args`` one by one, so formatters that read the arguments (uvicorn's access
formatter) keep working, and falls back to the formatted message only when a secret spans
arguments. Install it on the handlers (a handler filter sees the records of every logger
below it; a logger filter sees only that logger's own records): see docs/deploy.md and the
demo's ``LOGGING``. :func:`install_daphne_access_log_redaction` applies the same
redaction to daphne's access log stream; ``SecureWSConfig.ready()`` calls it.

This module imports nothing from Django, so a server's own logging configuration (uvicorn
``--log-config``) can name the filter before Django is set up. Its name shadows nothing:
absolute imports make ``import logging`` below the standard library's module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

__all__ = ["REDACTED", "RedactSecretsFilter", "install_daphne_access_log_redaction", "redact"]

#: What a secret is replaced with. It contains no character a rule below matches, so
#: redacting twice changes nothing.
REDACTED = "[redacted]"

#: Names whose values are secrets wherever they appear as ``name=value`` or
#: ``"name": value`` (query strings, form bodies, dict and JSON reprs). A name ending in
#: one of these (``access_token``, ``csrf_token``, ``client_secret``) counts too.
SECRET_NAMES = (
    "token",
    "ticket",
    "password",
    "passwd",
    "secret",
    "refresh",
    "jwt",
    "sessionid",
    "session_key",
    "api_key",
    "apikey",
    "csrftoken",
    "csrfmiddlewaretoken",
)

#: Header names whose whole value is a secret (the ``websockets`` DEBUG log prints headers).
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")

#: Random strings at least this long, with both upper- and lower-case letters, are treated
#: as secrets (tickets are ``token_urlsafe(32)``: 43 characters). Hex ids (connection ids,
#: hashes) are lower case and stay readable.
RANDOM_MIN_LENGTH = 32

_VALUE_END = r"\s\"'&,;<>\[\]{}()"
# A JWT (compact JWS/JWE: base64url JSON header "eyJ" and dotted parts), even truncated.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_=-]*){0,4}")
# The browser's handshake credential: a "bearer.<jwt>" subprotocol entry.
_BEARER_ENTRY = re.compile(r"(?i)\b(bearer\.)[^\s,;\"'<>\[\]]+")
# An Authorization credential ("Bearer <token>", "Basic <base64>").
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/-]{6,}=*")
# Whole values of secret headers, to the end of the line.
_SECRET_HEADER = re.compile(
    r"(?im)\b(" + "|".join(map(re.escape, SECRET_HEADERS)) + r")(\s*[\"']?\s*:\s*)[^\r\n]+"
)
# Values of credential-like names: token=..., "password": "...", ticket: ... The name may
# end a longer one (access_token, client_secret): only a letter or digit before it stops it.
_SECRET_VALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9])("
    + "|".join(map(re.escape, SECRET_NAMES))
    + r")([\"']?\s*[:=]\s*[\"']?)[^"
    + _VALUE_END
    + r"]+"
)
_QUERY = re.compile(r"(?<=\S)\?([^\s\"'<>#]+)")
_RANDOM = re.compile(r"[A-Za-z0-9_-]{" + str(RANDOM_MIN_LENGTH) + ",}")
_HAS_UPPER = re.compile(r"[A-Z]")
_HAS_LOWER = re.compile(r"[a-z]")


def _random_or_kept(match: re.Match[str]) -> str:
    text = match.group(0)
    if _HAS_UPPER.search(text) and _HAS_LOWER.search(text):
        return REDACTED
    return text


def redact(text: str, keep_params: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret replaced by :data:`REDACTED`.

    Every query-string value is replaced (the names stay, so an operator still sees that a
    client sent ``?token=``), except the values of ``keep_params``. Redacting twice gives
    the same text.
    """
    # Each rule runs only when a plain substring test finds its trigger: most log lines
    # contain none, and a substring test is far cheaper than a case-insensitive pattern.
    lowered = text.lower()
    kept = frozenset(keep_params)

    def query(match: re.Match[str]) -> str:
        parts = []
        for part in match.group(1).split("&"):
            name, equals, _value = part.partition("=")
            if not equals:
                parts.append(REDACTED if part else part)
            elif name in kept:
                parts.append(part)
            else:
                parts.append(f"{name}={REDACTED}")
        return "?" + "&".join(parts)

    if "?" in text:
        text = _QUERY.sub(query, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER_ENTRY.sub(r"\1" + REDACTED, text)
        text = _AUTH_SCHEME.sub(r"\1\2" + REDACTED, text)
    if any(header in lowered for header in SECRET_HEADERS):
        text = _SECRET_HEADER.sub(r"\1\2" + REDACTED, text)
    if any(name in lowered for name in SECRET_NAMES):
        text = _SECRET_VALUE.sub(r"\1\2" + REDACTED, text)
    if len(text) >= RANDOM_MIN_LENGTH:
        text = _RANDOM.sub(_random_or_kept, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Redact secrets in a log record's message, arguments and traceback; never drop it.

    Args:
        name: as :class:`logging.Filter` (records of other loggers pass untouched).
        keep_params: query parameters whose values are not secrets and stay readable
            (``["page"]``); every other query value is redacted.

    Cheap when there is nothing to redact: one formatting of the message (which the
    handler's formatter repeats anyway) and a few substring tests (about 5 µs a record).
    """

    def __init__(self, name: str = "", keep_params: Iterable[str] = ()) -> None:
        super().__init__(name)
        self.keep_params = tuple(keep_params)

    def redact(self, text: str) -> str:
        """Redact one string (a hook for subclasses that know more secrets)."""
        return redact(text, self.keep_params)

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return True  # a name-limited filter leaves other loggers' records alone
        try:
            message: str | None = record.getMessage()
        except Exception:
            message = None  # a broken call: redact the parts, the handler reports it
        if message is None or self.redact(message) != message:
            self._redact_message(record)
        self._redact_traceback(record)
        return True

    def _redact_message(self, record: logging.LogRecord) -> None:
        record.msg = self.redact(record.msg if isinstance(record.msg, str) else str(record.msg))
        if isinstance(record.args, Mapping):
            record.args = {key: self._redact_arg(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._redact_arg(value) for value in record.args)
        try:
            message = record.getMessage()
        except Exception:
            return
        redacted = self.redact(message)
        if redacted != message:
            # The secret spans arguments ("< %s: %s", "Cookie", "a=b"): keep the whole
            # message, redacted, and drop the arguments.
            record.msg, record.args = redacted, ()

    def _redact_arg(self, value: object) -> object:
        if value is None or isinstance(value, bool | int | float):
            return value
        text = value if isinstance(value, str) else _safe_str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted

    def _redact_traceback(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set; format it once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return ""


def install_daphne_access_log_redaction() -> bool:
    """Redact every entry of daphne's access log (``--access-log``, or stdout at ``-v 1``).

    The HTTP request line carries the query string and a WebSocket line the path.

    Returns:
        ``True`` when daphne is installed (and its access log now redacted).
    """
    # Imported here: compat imports Django, and this module must load without it (a
    # server's own logging configuration may name the filter before Django is set up).
    from secure_ws.compat import wrap_daphne_access_log

    return wrap_daphne_access_log(redact)
