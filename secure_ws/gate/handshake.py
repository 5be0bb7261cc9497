"""Decoded handshake headers, parsed once per connection and shared by the gate steps.

ASGI servers hand headers over as raw bytes; daphne joins repeated headers with ``", "``
(autobahn), uvicorn keeps them as separate entries. :class:`HandshakeHeaders` decodes every
value as strict UTF-8 once, so a non-UTF-8 byte is a clean refusal instead of an exception
deep inside a later step, and it counts repeats so duplicate ``Origin`` or
``Authorization`` headers can be refused whichever server joined them.

:func:`lenient_headers` is the exception, for the client-address step that runs before the
throttle and must not refuse: it reads a few headers without judging the others.
"""

from __future__ import annotations

from typing import Any

from secure_ws.codes import Reason
from secure_ws.exceptions import Refused

#: Scope key under which the parsed headers are cached.
HEADERS_SCOPE_KEY = "secure_ws.headers"


class HandshakeHeaders:
    """The handshake's headers, lower-cased names, strictly UTF-8-decoded values."""

    __slots__ = ("_values",)

    def __init__(self, raw_headers: Any) -> None:
        """Decode ``raw_headers`` (the ASGI list of byte pairs).

        Raises:
            Refused: ``bad_handshake`` when a name or value is not valid UTF-8.
        """
        self._values: dict[str, list[str]] = {}
        try:
            for name, value in raw_headers:
                decoded = bytes(name).decode("ascii").lower()
                self._values.setdefault(decoded, []).append(bytes(value).decode("utf-8"))
        except (UnicodeDecodeError, TypeError, ValueError) as exc:
            raise Refused(Reason.BAD_HANDSHAKE, "header is not valid UTF-8") from exc

    def get(self, name: str) -> str | None:
        """Return the header's value (repeats joined with ``", "``), or ``None``."""
        values = self._values.get(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ", ".join(values)

    def count(self, name: str) -> int:
        """Return how many times the header was sent as a separate entry."""
        return len(self._values.get(name, ()))

    def __contains__(self, name: object) -> bool:
        return name in self._values


def get_headers(scope: dict[str, Any]) -> HandshakeHeaders:
    """Return the scope's parsed headers, parsing them on first use.

    Raises:
        Refused: ``bad_handshake`` when a header is not valid UTF-8.
    """
    headers = scope.get(HEADERS_SCOPE_KEY)
    if not isinstance(headers, HandshakeHeaders):
        headers = HandshakeHeaders(scope.get("headers", ()))
        scope[HEADERS_SCOPE_KEY] = headers
    return headers


def lenient_headers(scope: dict[str, Any], names: frozenset[bytes]) -> dict[bytes, str]:
    """Return the values of the headers in ``names`` (repeats joined with ``", "``).

    Never refuses: bytes that are not UTF-8 become ``\\xNN`` text. Use it only for values
    that are parsed strictly afterwards (forwarded addresses) or stored escaped (user
    agent, host). ``names`` are lower-case; absent headers are absent from the result.
    """
    found: dict[bytes, list[str]] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).lower()
        if name in names:
            found.setdefault(name, []).append(bytes(raw_value).decode("utf-8", "backslashreplace"))
    return {name: ", ".join(values) for name, values in found.items()}
