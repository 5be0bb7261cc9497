"""Revocation: kicking live connections, revoked login sessions, the ``sid`` claim.

Every accepted connection is registered in its process's connection registry
(:mod:`secure_ws.sessions`) under its user id, its login session (a token's ``sid`` claim,
or the hashed Django session id) and its connection id. :func:`kick_user`,
:func:`kick_session` and :func:`kick_connection` publish one message; every process closes
its own matches with 4403 ``revoked`` (no channel-layer group per connection).

What triggers it, besides the admin's "Disconnect" action:

* a user is deactivated or their password changes (model signals) -> their cached state is
  dropped on every process and all their connections are kicked;
* a refresh token is blacklisted by simplejwt's blacklist view (logout) -> its ``sid`` is
  marked revoked (Redis key living as long as tokens of that session can, plus a database
  row) so the gate refuses new handshakes with it, and that session's connections, only
  those, are kicked.
* a Django session logs out (``user_logged_out``, :mod:`secure_ws.sessions.django_session`) -> the
  same, under the hashed session id: its session-auth sockets and the connections of
  tickets it asked for are kicked, and its pending tickets are refused.

A ticket connection is registered under the credential that asked for the ticket, so all of
this reaches it too. The simplejwt serializers that issue the ``sid`` claim and revoke it at
logout live in :mod:`secure_ws.api.serializers`.

Kicks run after the change is committed (``transaction.on_commit``), so a rolled-back
change kicks nobody and a reconnect never sees the old state. ``QuerySet.update()`` sends no
signals: call :func:`revoke_user` yourself after bulk changes.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from redis.exceptions import RedisError

from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.exceptions import BackendUnavailable
from secure_ws.gate.userstate import invalidate_user_sync
from secure_ws.jwt_settings import jwt_settings
from secure_ws.sessions.models import RevokedSession
from secure_ws.sessions.pubsub import publish, publish_sync
from secure_ws.sessions.registry import SessionMessage
from secure_ws.state import command_deadline, get_redis, get_sync_redis, key

logger = logging.getLogger(__name__)

#: Channel-layer event type a consumer handles by closing with 4403 ``revoked``
#: (:func:`kick_channel`). Channels maps it to the consumer method ``secure_ws_revoke``.
REVOKE_EVENT_TYPE = "secure_ws.revoke"

#: The JWT claim naming the login session; copied from a refresh token into its access tokens.
SESSION_CLAIM = "sid"

#: Most session ids remembered by the in-process cache (no-Redis fallback).
MAX_CACHED_SESSIONS = 10000

_session_cache: dict[str, tuple[bool, float]] = {}


async def kick_user(user_id: int | str, reason: str = "revoked") -> None:
    """Close every live connection of ``user_id`` on every process (4403).

    Raises:
        BackendUnavailable: Redis did not take the message (this process still acted).
    """
    await publish(SessionMessage("user", str(user_id), reason))


async def kick_session(session_id: str, reason: str = "revoked") -> None:
    """Close every live connection opened with tokens of login session ``session_id`` (4403).

    Raises:
        BackendUnavailable: Redis did not take the message (this process still acted).
    """
    await publish(SessionMessage("session", session_id, reason))


async def kick_connection(connection_id: str, reason: str = "revoked") -> None:
    """Close the one live connection ``connection_id`` (the audit row's id), wherever it is.

    Raises:
        BackendUnavailable: Redis did not take the message (this process still acted).
    """
    await publish(SessionMessage("connection", connection_id, reason))


async def kick_channel(channel_name: str, reason: str = "revoked") -> None:
    """Close the one live connection behind channel-layer ``channel_name`` (4403).

    Kept for callers that hold a channel name; :func:`kick_connection` needs no channel layer.
    """
    layer: Any = get_channel_layer()
    if layer is not None:
        await layer.send(channel_name, {"type": REVOKE_EVENT_TYPE, "reason": reason})


# -- users: deactivation and password change ------------------------------------------


def revoke_user(user_id: int | str) -> None:
    """Drop ``user_id``'s cached state everywhere and close all their connections now.

    Call it after the change is committed (the signal receivers do).
    """
    try:
        invalidate_user_sync(user_id)
    except Exception:
        # The kick still happens; the gate's short cache TTL bounds the window.
        logger.exception("user-state invalidation failed: user_id=%s", user_id)
    try:
        publish_sync(SessionMessage("user", str(user_id), "user_changed"))
    except Exception:
        logger.exception("kick failed: user_id=%s", user_id)


def _remember_user_state(sender: Any, instance: Any, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and not {"is_active", "password"} & set(update_fields):
        return
    instance._secure_ws_previous = (
        sender._default_manager.filter(pk=instance.pk).values("is_active", "password").first()
    )


def _revoke_on_user_change(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_secure_ws_previous", None)
    instance._secure_ws_previous = None
    if created or previous is None:
        return
    deactivated = previous["is_active"] and not instance.is_active
    password_changed = previous["password"] != instance.password
    if deactivated or password_changed:
        user_id = instance.pk
        transaction.on_commit(lambda: revoke_user(user_id))


pre_save.connect(
    _remember_user_state, sender=settings.AUTH_USER_MODEL, dispatch_uid="secure_ws.user_pre"
)
post_save.connect(
    _revoke_on_user_change, sender=settings.AUTH_USER_MODEL, dispatch_uid="secure_ws.user_post"
)


# -- login sessions: the sid claim and logout ----------------------------------------


def _session_ttl() -> int:
    jwt = jwt_settings()
    lifetime: timedelta = jwt.REFRESH_TOKEN_LIFETIME + jwt.ACCESS_TOKEN_LIFETIME
    return max(1, int(lifetime.total_seconds()))


def _session_key(session_id: str) -> str:
    return key("revoked_sid", session_id)


def revoke_session(session_id: str, user_id: Any = None, ttl: int | None = None) -> None:
    """Refuse every credential of login session ``session_id`` and close its connections.

    ``session_id`` is a token's ``sid`` or the id of a Django session
    (:func:`secure_ws.sessions.django_session.session_credential_id`); ``ttl`` is how long the mark
    must outlive the logout (default: as long as a token of the session can live). The
    database row is written in the caller's transaction; the Redis mark and the kick
    follow the commit.
    """
    seconds = _session_ttl() if ttl is None else max(1, int(ttl))
    expires = timezone.now() + timedelta(seconds=seconds)
    RevokedSession.objects.update_or_create(
        session_id=session_id[:64],
        defaults={"expires_at": expires, "user_id": _as_user_id(user_id)},
    )
    transaction.on_commit(lambda: _after_session_revoked(session_id, seconds))


def _as_user_id(user_id: Any) -> int | None:
    try:
        return int(user_id)
    except (TypeError, ValueError):
        return None


def _after_session_revoked(session_id: str, ttl: int) -> None:
    _session_cache[session_id] = (True, time.monotonic())
    client = get_sync_redis()
    if client is not None:
        try:
            client.set(_session_key(session_id), "1", ex=ttl)
        except Exception:
            logger.exception("could not mark a revoked session in Redis")
    try:
        publish_sync(SessionMessage("session", session_id, "logout"))
    except Exception:
        logger.exception("kick of a revoked session failed")


def _revoked_in_database(session_id: str) -> bool:
    return RevokedSession.objects.filter(
        session_id=session_id, expires_at__gt=timezone.now()
    ).exists()


async def is_session_revoked(session_id: str) -> bool:
    """Return whether login session ``session_id`` was logged out.

    With Redis: one ``EXISTS`` (no database on the handshake). Without: the database,
    cached in-process for ``USER_CACHE_TTL`` seconds (revocations on this process are seen
    at once).

    Raises:
        BackendUnavailable: when Redis or the database cannot answer (fail closed).
    """
    client = get_redis()
    if client is not None:
        try:
            async with command_deadline():
                found: int = await client.exists(_session_key(session_id))
                return found > 0
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("session revocation: Redis unavailable") from exc
    ttl = get_settings().USER_CACHE_TTL
    cached = _session_cache.get(session_id)
    now = time.monotonic()
    if cached is not None and (cached[0] or now - cached[1] < ttl):
        return cached[0]
    try:
        revoked: bool = await database_sync_to_async(_revoked_in_database)(session_id)
    except DatabaseError as exc:
        raise BackendUnavailable("session revocation: database unavailable") from exc
    if len(_session_cache) >= MAX_CACHED_SESSIONS:
        _session_cache.pop(next(iter(_session_cache)))
    _session_cache[session_id] = (revoked, now)
    return revoked


def is_session_revoked_sync(session_id: str) -> bool:
    """Synchronous form of :func:`is_session_revoked`, for views.

    Raises:
        BackendUnavailable: when Redis or the database cannot answer (fail closed).
    """
    client = get_sync_redis()
    try:
        if client is not None:
            return bool(client.exists(_session_key(session_id)))
        return _revoked_in_database(session_id)
    except (RedisError, OSError) as exc:
        raise BackendUnavailable("session revocation: Redis unavailable") from exc
    except DatabaseError as exc:
        raise BackendUnavailable("session revocation: database unavailable") from exc


def clear_session_cache() -> None:
    """Forget the in-process session cache (tests, and ``setting_changed``)."""
    _session_cache.clear()


register_cache_clearer(clear_session_cache)
