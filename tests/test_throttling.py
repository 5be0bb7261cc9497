"""Login, refresh and ticket throttles: DRF scopes counted atomically in the real Redis.

Every test counts in a cache prefix of its own, so the suite's other logins (all from
127.0.0.1) never count here. Rates are set low per test; tests/settings.py raises them for
everything else.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from secure_ws.api.throttling import DEFAULT_RATES, ScopedRateThrottle
from tests.conftest import DEMO_PASSWORD, DaphneServer, free_port

ORIGIN = "https://app.example.com"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"

pytestmark = pytest.mark.usefixtures("demo_users")


@pytest.fixture
def throttle_cache(settings: Any) -> str:
    """A Redis cache (the real test server) under a key prefix of this test's own."""
    prefix = f"{settings.SECURE_WS['KEY_PREFIX']}:throttle-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {"BACKEND": REDIS_CACHE, "LOCATION": settings.REDIS_URL, "KEY_PREFIX": prefix}
    }
    settings.SECURE_WS = {**settings.SECURE_WS, "ALLOWED_ORIGINS": [ORIGIN]}
    return prefix


@pytest.fixture
def set_rates(settings: Any) -> Callable[..., None]:
    def apply(**rates: str | None) -> None:
        current = settings.REST_FRAMEWORK
        settings.REST_FRAMEWORK = {
            **current,
            "DEFAULT_THROTTLE_RATES": {**current.get("DEFAULT_THROTTLE_RATES", {}), **rates},
        }

    return apply


def login(client: Client, password: str = DEMO_PASSWORD, **headers: str) -> Any:
    return client.post(
        "/api/token/", {"username": "alice", "password": password}, secure=True, **headers
    )


def assert_throttled(response: Any, window: int) -> None:
    """429 with a Retry-After within two windows (the weighted previous one decays)."""
    assert response.status_code == 429, response.content
    assert 1 <= int(response["Retry-After"]) <= 2 * window


# From the outside: the demo on daphne, rate from its environment ---------------------------


def post_login(server: DaphneServer, password: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(
        f"{server.http_url}/api/token/",
        data=json.dumps({"username": "alice", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read().decode()


def test_login_past_the_rate_is_refused_429_and_refused_logins_count(
    daphne_server: Callable[..., DaphneServer], settings: Any, redis_client: Any
) -> None:
    """Three attempts a minute: two wrong passwords and a right one use them all up."""
    prefix = f"{settings.SECURE_WS['KEY_PREFIX']}-login-{uuid.uuid4().hex[:8]}"
    server = daphne_server(env={"THROTTLE_TOKEN_RATE": "3/min", "SECURE_WS_KEY_PREFIX": prefix})
    statuses = [post_login(server, "wrong-password")[0] for _ in range(2)]
    statuses.append(post_login(server, DEMO_PASSWORD)[0])
    assert statuses == [401, 401, 200]
    status, headers, body = post_login(server, DEMO_PASSWORD)
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 120
    assert "access" not in body
    # Counted in the shared Redis (the demo's CACHES), not in the process.
    assert redis_client.keys(f"{prefix}:cache:*throttle:token:127.0.0.1:*")


# The other endpoints and the shapes an attacker would try ---------------------------------


def test_refresh_past_the_rate_is_refused_429(
    client: Client, throttle_cache: str, set_rates: Callable[..., None]
) -> None:
    set_rates(token_refresh="2/min")
    refresh = login(client).json()["refresh"]
    first = client.post("/api/token/refresh/", {"refresh": refresh}, secure=True)
    assert first.status_code == 200
    replay = client.post("/api/token/refresh/", {"refresh": "not-a-token"}, secure=True)
    assert replay.status_code == 401
    assert_throttled(
        client.post("/api/token/refresh/", {"refresh": first.json()["refresh"]}, secure=True), 60
    )


def test_ticket_issuance_past_the_rate_is_refused_429_per_user(
    client: Client,
    throttle_cache: str,
    set_rates: Callable[..., None],
    demo_users: dict[str, Any],
    token_for: Any,
) -> None:
    set_rates(ws_ticket="2/min")

    def ticket(user: str) -> Any:
        bearer = f"Bearer {token_for(demo_users[user])}"
        return client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=bearer)

    assert [ticket("alice").status_code for _ in range(2)] == [201, 201]
    refused = ticket("alice")
    assert_throttled(refused, 60)
    assert "ticket" not in refused.json()
    assert ticket("bob").status_code == 201


def test_ticket_view_is_throttled_without_a_configured_rate(
    client: Client,
    throttle_cache: str,
    settings: Any,
    demo_users: dict[str, Any],
    token_for: Any,
) -> None:
    """A project that names no ``ws_ticket`` rate gets secure_ws' default, not no limit."""
    settings.REST_FRAMEWORK = {
        key: value for key, value in settings.REST_FRAMEWORK.items() if "THROTTLE" not in key
    }
    limit = int(DEFAULT_RATES["ws_ticket"].split("/")[0])
    bearer = f"Bearer {token_for(demo_users['alice'])}"
    codes = [
        client.post("/api/ws-ticket/", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=bearer).status_code
        for _ in range(limit + 1)
    ]
    assert codes == [201] * limit + [429]


def test_a_new_x_forwarded_for_per_request_is_not_a_new_bucket(
    client: Client, throttle_cache: str, set_rates: Callable[..., None]
) -> None:
    """Without a trusted proxy the header is the client's own words: the peer is counted."""
    set_rates(token="2/min")
    codes = [
        login(client, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(3)
    ]
    assert codes == [401, 401, 429]


def test_clients_behind_a_trusted_proxy_have_buckets_of_their_own(
    client: Client, throttle_cache: str, set_rates: Callable[..., None], settings: Any
) -> None:
    settings.SECURE_WS = {**settings.SECURE_WS, "TRUSTED_PROXIES": ["127.0.0.1/32"]}
    set_rates(token="1/min")
    first = login(client, "wrong", HTTP_X_FORWARDED_FOR="203.0.113.5")
    other = login(client, "wrong", HTTP_X_FORWARDED_FOR="203.0.113.6")
    again = login(client, "wrong", HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.5")
    assert [first.status_code, other.status_code] == [401, 401]
    assert_throttled(again, 60)


def test_ipv6_clients_are_counted_per_64(
    client: Client, throttle_cache: str, set_rates: Callable[..., None]
) -> None:
    """One host owns a whole /64: a new address from it is not a new bucket."""
    set_rates(token="1/min")
    first = login(client, "wrong", REMOTE_ADDR="2001:db8:1:2::1")
    again = login(client, "wrong", REMOTE_ADDR="2001:db8:1:2::ffff")
    assert first.status_code == 401
    assert_throttled(again, 60)


class ThrottledView(APIView):
    throttle_scope = "burst"


def test_a_parallel_burst_gets_exactly_the_rate(
    throttle_cache: str, set_rates: Callable[..., None]
) -> None:
    """Requests arriving together are counted one by one (one Redis INCR each)."""
    set_rates(burst="5/min")
    requests, allowed = 40, []
    barrier = threading.Barrier(requests)
    factory = APIRequestFactory()

    def attempt() -> None:
        request = ThrottledView().initialize_request(factory.post("/api/token/"))
        barrier.wait(timeout=30)
        if ScopedRateThrottle().allow_request(request, ThrottledView()):
            allowed.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(allowed) == 5


def test_retry_after_is_when_the_next_request_fits(
    throttle_cache: str, set_rates: Callable[..., None]
) -> None:
    """Across window boundaries: refused until ``Retry-After`` has passed, allowed after."""
    set_rates(burst="3/min")
    now = [1_000_000.0 * 60 + 50]  # 10 s before a window ends
    request = ThrottledView().initialize_request(APIRequestFactory().post("/"))

    def allow() -> tuple[bool, float | None]:
        throttle = ScopedRateThrottle()
        throttle.timer = lambda: now[0]  # type: ignore[method-assign]
        return throttle.allow_request(request, ThrottledView()), throttle.wait()

    assert [allow()[0] for _ in range(3)] == [True, True, True]
    for _ in range(3):
        allowed, wait = allow()
        assert not allowed
        assert wait is not None
        now[0] += wait - 1
        assert not allow()[0]
        now[0] += 1.001
        assert allow()[0]


def test_an_unreachable_cache_refuses_logins_with_503(
    client: Client, settings: Any, set_rates: Callable[..., None]
) -> None:
    """The count cannot be read: fail closed, cleanly (no guess gets through, no 500)."""
    settings.CACHES = {
        "default": {
            "BACKEND": REDIS_CACHE,
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 2},
        }
    }
    set_rates(token="5/min")
    response = login(client)
    assert response.status_code == 503
    assert "access" not in response.json()
