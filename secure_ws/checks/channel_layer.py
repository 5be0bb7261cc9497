"""E030/W031: a shared channel layer, and Redis reached over TLS when it is remote."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from secure_ws.checks.values import settings_valid
from secure_ws.conf import get_settings

_IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def _redis_addresses(hosts: object) -> Iterator[str]:
    """Yield the URL-like address of each channels-redis ``hosts`` entry."""
    if not isinstance(hosts, list | tuple):
        return
    for host in hosts:
        if isinstance(host, str):
            yield host
        elif isinstance(host, Mapping) and isinstance(host.get("address"), str):
            yield host["address"]
        elif isinstance(host, list | tuple) and len(host) == 2:
            yield f"redis://{host[0]}:{host[1]}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _plain_remote_redis(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "redis" and not _is_loopback(parts.hostname or "")


@register(Tags.security, deploy=True)
def check_channel_layer(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Report an in-memory or missing channel layer (E030) and plain remote Redis (W031)."""
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default")
    if layer is None or layer.get("BACKEND") == _IN_MEMORY_LAYER:
        messages.append(
            Error(
                "No channel layer or the in-memory one: revocation, kicks and file events "
                "do not reach connections held by other processes.",
                hint="Use channels_redis.core.RedisChannelLayer (or the pubsub layer) with "
                "CHANNEL_LAYERS['default'].",
                id="secure_ws.E030",
            )
        )
    urls = list(_redis_addresses((layer or {}).get("CONFIG", {}).get("hosts")))
    if settings_valid() and get_settings().REDIS_URL:
        urls.append(str(get_settings().REDIS_URL))
    for url in urls:
        if _plain_remote_redis(url):
            host = urlsplit(url).hostname
            messages.append(
                Warning(
                    f"Redis at {host} is reached over plain redis://: tokens' revocation "
                    "state and channel messages cross the network unencrypted.",
                    hint="Use rediss:// with a password (see docs/deploy.md), or keep Redis "
                    "on loopback or a unix socket.",
                    id="secure_ws.W031",
                )
            )
    return messages
