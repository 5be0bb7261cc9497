"""A DRF scoped throttle for the endpoints that hand out credentials.

Login (``/api/token/``), refresh and ticket endpoints are where passwords and tokens are
guessed, so they need a throttle that holds under the attacks a guesser actually runs.
DRF's ``ScopedRateThrottle`` does not:

* it reads the request history from the cache, appends and writes it back, so requests
  sent in parallel (or to several processes) all read the same history and all pass;
* without ``NUM_PROXIES`` it keys an anonymous client by the raw ``X-Forwarded-For``
  header, which the client writes: a new header per request is a new bucket;
* it reads ``DEFAULT_THROTTLE_RATES`` once at import, so ``override_settings`` misses it.

:class:`ScopedRateThrottle` keeps DRF's interface (``throttle_scope`` on the view, rates in
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, 429 with ``Retry-After``) and counts with one
atomic cache increment per request (a sliding-window counter: this window's count plus the
previous window's, weighted by how much of it still overlaps), keys anonymous clients by the
address the gate trusts (``X-Forwarded-For`` only from ``TRUSTED_PROXIES``; IPv6 by /64, as the
handshake throttle does), and fails closed
with a 503 when the cache (Redis) cannot be reached.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from collections.abc import Mapping
from typing import ClassVar

import redis.exceptions
from django.core.exceptions import ImproperlyConfigured
from rest_framework import status, throttling
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from secure_ws.conf import get_settings
from secure_ws.exceptions import Refused
from secure_ws.gate.client import resolve_client
from secure_ws.gate.throttle import rate_key_for

#: Rates for the scopes secure_ws' own views use, when the project names none.
DEFAULT_RATES: dict[str, str] = {"ws_ticket": "30/min"}


class ThrottleUnavailable(APIException):
    """The throttle's cache cannot be reached: refuse rather than let guesses through."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Try again later."
    default_code = "backend_unavailable"


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """Allow the scope's ``N`` requests per period per client, counted atomically.

    The client is the user when authenticated, otherwise the client IP as the gate resolves
    it. Requests the throttle refuses do not count; every request it lets through does,
    whatever the view answers (a wrong password counts like a right one).
    """

    #: Rates used for scopes that ``DEFAULT_THROTTLE_RATES`` does not name.
    default_rates: ClassVar[dict[str, str]] = DEFAULT_RATES

    def __init__(self) -> None:
        # The rate depends on the view's scope: found per request (as DRF's own does).
        self.wait_seconds: float | None = None

    def get_rate(self) -> str | None:
        """The scope's rate, read now (not at import), then the class default.

        Raises:
            ImproperlyConfigured: no rate anywhere for the scope.
        """
        scope = str(self.scope)
        rates: Mapping[str, object] = api_settings.DEFAULT_THROTTLE_RATES or {}
        if scope in rates:
            rate = rates[scope]
            return None if rate is None else str(rate)
        if scope in self.default_rates:
            return self.default_rates[scope]
        raise ImproperlyConfigured(
            f"No throttle rate for scope {self.scope!r}: set "
            f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'][{self.scope!r}]."
        )

    def get_ident(self, request: Request) -> str:
        """The client as the gate sees it: its IP (IPv6: its /64), proxies only if trusted."""
        peer = str(request.META.get("REMOTE_ADDR") or "")
        trusted = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in get_settings().TRUSTED_PROXIES
        )
        try:
            client, _scheme, _proxied = resolve_client(
                peer, request.headers.get("X-Forwarded-For"), None, "http", trusted
            )
        except Refused:
            # A trusted proxy forwarded garbage: count against the proxy (fail closed).
            return rate_key_for(peer)
        return rate_key_for(client)

    def allow_request(self, request: Request, view: APIView) -> bool:
        """Count this request and return whether it is within the scope's rate."""
        self.scope = getattr(view, self.scope_attr, None)
        self.wait_seconds = None
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        limit, duration = self.parse_rate(self.rate)
        if limit is None or duration is None:
            return True
        user = getattr(request, "user", None)
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        now = self.timer()
        window = int(now // duration)
        elapsed = (now - window * duration) / duration
        key = f"throttle:{self.scope}:{ident}"
        current_key, previous_key = f"{key}:{window}", f"{key}:{window - 1}"
        try:
            current = self._increment(current_key, 2 * duration + 1)
            previous = int(self.cache.get(previous_key) or 0)
            if previous * (1 - elapsed) + current <= limit:
                return True
            self._uncount(current_key)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise ThrottleUnavailable from exc
        self.wait_seconds = self._wait(previous, current - 1, limit, duration, elapsed)
        return False

    def _increment(self, key: str, timeout: int) -> int:
        """Add one to ``key`` atomically (Redis ``INCR``), creating it at zero."""
        self.cache.add(key, 0, timeout)
        try:
            return int(self.cache.incr(key))
        except ValueError:
            # Evicted between add and incr: start the count again.
            self.cache.add(key, 1, timeout)
            return 1

    def _uncount(self, key: str) -> None:
        """Take back a refused request, so that hammering does not extend the lock-out."""
        # ValueError: the window's key expired meanwhile, so there is nothing to take back.
        with contextlib.suppress(ValueError):
            self.cache.decr(key)

    @staticmethod
    def _wait(previous: int, current: int, limit: int, duration: int, elapsed: float) -> float:
        """Seconds until one more request fits, given the counts after this refusal."""
        if current + 1 <= limit and previous > 0:
            # Within this window: wait for the previous window's weight to fall enough.
            needed = 1 - (limit - 1 - current) / previous
            return max(needed - elapsed, 0.0) * duration
        # In the next window this window is the previous one; wait for its weight to fall.
        needed = min(max(1 - (limit - 1) / current, 0.0), 1.0) if current > 0 else 0.0
        return (1 - elapsed) * duration + needed * duration

    def wait(self) -> float | None:
        """Seconds to send as ``Retry-After`` (at least one), or None when not throttled."""
        if self.wait_seconds is None:
            return None
        return float(max(math.ceil(self.wait_seconds), 1))
