"""One probe run's connections: credentials, origins, throttle and protocol detection.

Every check opens its connections through :class:`ProbeSession`, so the global token
bucket, the credentials and the redaction apply to all of them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from secure_ws.probe.model import ProbeConfig
from secure_ws.probe.throttle import TokenBucket

#: The application subprotocol of secure_ws (kept literal: no Django import here).
APP_SUBPROTOCOL = "secure-ws.v1"

#: Close codes that mean "refused with a reason" when a server accepts then closes.
REFUSAL_CLOSE_CODES = frozenset({1008, 4008, 4401, 4403, 4429, 1013, 4013})

#: Largest message the probe will receive (echoes of its own oversized probes included).
RECEIVE_MAX_BYTES = 16 * 1024 * 1024

#: Marker put into hostile inputs, looked for in replies.
MARKER = "probe-mark-7f3a"

#: Handshakes per second once the target refused a known-good handshake (its handshake
#: throttle): under secure_ws's default ``HANDSHAKE_RATE`` of 60 per minute; halved each
#: time the target refuses again.
THROTTLED_HANDSHAKE_RATE = 0.9
#: Retries of one known-good handshake the target refused with one of these statuses.
THROTTLE_RETRIES = 3
THROTTLE_STATUSES = frozenset({403, 429})
#: Longest ``Retry-After`` the probe honours before retrying a ticket request.
MAX_RETRY_AFTER = 15.0


@dataclass
class Handshake:
    """What one handshake attempt produced."""

    accepted: bool
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    subprotocol: str | None = None
    error: str = ""
    close_code: int | None = None
    close_reason: str = ""
    first_frame: str | None = None

    @property
    def refused(self) -> bool:
        """Refused at the handshake, or accepted and closed at once with a refusal code."""
        if not self.accepted:
            return self.status is not None and 400 <= self.status < 500
        return self.close_code in REFUSAL_CLOSE_CODES

    def describe(self) -> str:
        """One line: how the server answered."""
        if not self.accepted:
            return f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"
        if self.close_code is not None:
            return f"accepted then closed {self.close_code} {self.close_reason}".strip()
        return "accepted (101)" + (f", subprotocol {self.subprotocol}" if self.subprotocol else "")


class ProbeSession:
    """Shared state of one probe run."""

    def __init__(self, config: ProbeConfig) -> None:
        self.config = config
        self.bucket = TokenBucket(config.max_rate)
        #: Paces handshakes alone: ``--handshake-rate``, or set once the target throttles.
        self.pace: TokenBucket | None = (
            TokenBucket(config.handshake_rate, burst=1) if config.handshake_rate else None
        )
        #: Known-good handshakes the target refused and the probe retried more slowly.
        self.throttled = 0
        #: "v1" when the endpoint selected secure-ws.v1, "json" otherwise, None if unknown.
        self.mode: str | None = None
        self.baseline: Handshake | None = None
        self.baseline_error = ""

    # ------------------------------------------------------------------ addressing

    @property
    def expected_origin(self) -> str:
        """The origin the site expects (``--origin``, or derived from the URL)."""
        if self.config.origin:
            return self.config.origin.rstrip("/")
        parts = urllib.parse.urlsplit(self.config.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return f"{scheme}://{parts.netloc}"

    def url_with(self, *, path_suffix: str = "", query: str = "", scheme: str | None = None) -> str:
        """The target URL with another scheme, a longer path or extra query parameters."""
        parts = urllib.parse.urlsplit(self.config.url)
        new_query = "&".join(q for q in (parts.query, query) if q)
        return urllib.parse.urlunsplit(
            (scheme or parts.scheme, parts.netloc, parts.path + path_suffix, new_query, "")
        )

    @property
    def has_credentials(self) -> bool:
        """Whether any credential option was given."""
        c = self.config
        return bool(c.token or c.ticket_url or c.headers)

    # ------------------------------------------------------------------ credentials

    def credential_parts(self, token: str | None) -> tuple[list[str], list[tuple[str, str]]]:
        """Subprotocol entries and headers that carry ``token`` the configured way."""
        if token is None:
            return [], []
        if self.config.token_via == "header":  # noqa: S105
            return [], [("Authorization", f"Bearer {token}")]
        return [f"bearer.{token}"], []

    async def fetch_ticket(self) -> str:
        """POST the ticket URL (with the token and headers) and return a fresh ticket.

        Raises:
            RuntimeError: the ticket URL did not answer with a ticket.
        """
        await self.bucket.take()
        headers = {"Origin": self.expected_origin, "Accept": "application/json"}
        headers.update(self.config.headers)
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        url = self.config.ticket_url or ""
        if not url.startswith(("http://", "https://")):
            raise RuntimeError("ticket URL must be http(s)")
        request = urllib.request.Request(url, data=b"", headers=headers, method="POST")  # noqa: S310

        def post() -> Any:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read(65536))

        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                data = await asyncio.to_thread(post)
                break
            except urllib.error.HTTPError as exc:
                # 429: the ticket view's throttle paces us; wait as long as it asks.
                if exc.code != 429 or attempt == THROTTLE_RETRIES:
                    raise RuntimeError(f"ticket URL failed: HTTP {exc.code}") from None
                await asyncio.sleep(retry_after(exc.headers.get("Retry-After")))
            except Exception as exc:
                raise RuntimeError(f"ticket URL failed: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not isinstance(data.get("ticket"), str):
            raise RuntimeError("ticket URL answered without a ticket")
        return str(data["ticket"])

    # ------------------------------------------------------------------ connections

    @contextlib.asynccontextmanager
    async def connection(
        self,
        *,
        url: str | None = None,
        origin: str | bool | None = True,
        credentials: bool = True,
        token: str | None = None,
        subprotocols: Sequence[str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        compression: str | None = None,
        retry_throttled: bool = True,
    ) -> AsyncIterator[ClientConnection]:
        """Open a connection (taking a throttle token) and close it afterwards.

        ``origin=True`` sends the expected origin, ``None``/``False`` sends none, a string
        sends that. ``credentials=True`` presents the configured credentials; ``token``
        presents that token instead. A refusal (403/429) of the same handshake the
        baseline opened is the target's throttle: the probe slows down and retries it,
        unless ``retry_throttled`` is off (a check that expects a refusal there).

        Raises:
            InvalidStatus, InvalidHandshake, OSError, TimeoutError: the handshake failed.
        """
        offered = (
            [APP_SUBPROTOCOL, *self.config.subprotocols]
            if subprotocols is None
            else list(subprotocols)
        )
        extra_headers = list(headers)
        if token is not None:
            protos, hdrs = self.credential_parts(token)
            offered += protos
            extra_headers += hdrs
        elif credentials:
            protos, hdrs = self.credential_parts(self.config.token)
            if not self.config.ticket_url:
                offered += protos
                extra_headers += hdrs
            extra_headers += self.config.headers
        if origin is True:
            origin_value: str | None = self.expected_origin
        else:
            origin_value = origin or None
        # The same handshake as the accepted baseline: a refusal now is the target pacing
        # us (its handshake throttle), not a verdict; retry it more slowly.
        known_good = (
            retry_throttled
            and url is None
            and origin is True
            and credentials
            and token is None
            and subprotocols is None
            and not headers
            and compression is None
            and self.baseline is not None
            and self.baseline.accepted
            and self.baseline.close_code is None
        )
        for attempt in range(THROTTLE_RETRIES + 1):
            await self.bucket.take()
            if self.pace is not None:
                await self.pace.take()
            target = url or self.config.url
            if credentials and token is None and self.config.ticket_url:
                ticket = await self.fetch_ticket()
                sep = "&" if "?" in target else "?"
                target = f"{target}{sep}ticket={urllib.parse.quote(ticket)}"
            try:
                conn = await connect(
                    target,
                    origin=origin_value,  # type: ignore[arg-type]
                    subprotocols=offered or None,  # type: ignore[arg-type]
                    additional_headers=extra_headers or None,
                    compression=compression,
                    open_timeout=min(10.0, self.config.timeout),
                    close_timeout=2,
                    max_size=RECEIVE_MAX_BYTES,
                    ping_interval=None,
                    proxy=None,
                    user_agent_header="secure-ws-probe",
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if not known_good or attempt == THROTTLE_RETRIES or status not in THROTTLE_STATUSES:
                    raise
                await self.slow_down()
                continue
            break
        async with conn:
            yield conn

    async def slow_down(self) -> None:
        """The target throttled us: pace handshakes under its rate from now on."""
        rate = THROTTLED_HANDSHAKE_RATE if self.pace is None else self.pace.rate / 2
        self.pace = TokenBucket(rate, burst=1)
        await self.pace.take()  # start empty: the next handshake waits a full interval
        self.throttled += 1

    async def attempt(self, settle: float = 0.5, **kwargs: Any) -> Handshake:
        """Try one handshake; if accepted, watch it for ``settle`` seconds, then close it."""
        try:
            async with self.connection(**kwargs) as conn:
                result = Handshake(
                    accepted=True,
                    status=101,
                    headers=list(conn.response.headers.raw_items()) if conn.response else [],
                    subprotocol=conn.subprotocol,
                )
                try:
                    frame = await asyncio.wait_for(conn.recv(), settle)
                    result.first_frame = frame if isinstance(frame, str) else repr(frame[:64])
                    await asyncio.wait_for(conn.recv(), settle)
                except TimeoutError:
                    pass
                except ConnectionClosed as closed:
                    if closed.rcvd is not None:
                        result.close_code = closed.rcvd.code
                        result.close_reason = closed.rcvd.reason
                    else:
                        result.close_code = 1006
                return result
        except InvalidStatus as exc:
            response = exc.response
            return Handshake(
                accepted=False,
                status=response.status_code,
                headers=list(response.headers.raw_items()),
                body=bytes(response.body or b"")[:4096],
            )
        except (InvalidHandshake, OSError, TimeoutError, RuntimeError) as exc:
            return Handshake(accepted=False, error=type(exc).__name__)

    async def send(self, conn: ClientConnection, data: str | bytes | Sequence[str]) -> None:
        """Send one message (a list of strings is sent as fragments), taking a token."""
        await self.bucket.take()
        if isinstance(data, (str, bytes)):
            await conn.send(data)
        else:
            await conn.send(iter(data))

    async def detect(self) -> Handshake:
        """Open the baseline connection once: can we connect, does it speak secure-ws.v1?"""
        if self.baseline is None:
            self.baseline = await self.attempt(settle=0.3)
            if self.baseline.accepted and self.baseline.close_code is None:
                self.mode = "v1" if self.baseline.subprotocol == APP_SUBPROTOCOL else "json"
        return self.baseline


def retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for, bounded to [1, MAX_RETRY_AFTER]."""
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


async def receive(conn: ClientConnection, timeout: float) -> str | bytes | None:  # noqa: ASYNC109
    """The next message, or ``None`` if none came within ``timeout``.

    Raises:
        ConnectionClosed: the server closed the connection.
    """
    try:
        return await asyncio.wait_for(conn.recv(), timeout)
    except TimeoutError:
        return None


def close_code_of(exc: ConnectionClosed) -> int:
    """The close code the server sent, or 1006 if the connection just dropped."""
    return exc.rcvd.code if exc.rcvd is not None else 1006


def parse_frame(frame: str | bytes | None) -> dict[str, Any] | None:
    """A text frame as a JSON object, or ``None``."""
    if not isinstance(frame, str):
        return None
    try:
        value = json.loads(frame)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def error_code(frame: str | bytes | None) -> str | None:
    """The ``code`` of a secure-ws.v1 ``error`` frame (or a generic ``{"error": ...}``)."""
    data = parse_frame(frame)
    if data is None:
        return None
    if data.get("type") == "error":
        payload = data.get("payload")
        if isinstance(payload, dict):
            return str(payload.get("code", "error"))
        return "error"
    if "error" in data:
        return str(data["error"])[:40]
    return None
