"""A short-lived cache of user state, so the database stays off the handshake's hot path.

``database_sync_to_async`` runs every call of a process on one shared thread: one query
per handshake serialises all handshakes of a process. The credentials step therefore reads
the user (existence, ``is_active``, the password hash simplejwt's ``CHECK_REVOKE_TOKEN``
compares) from this cache and goes to the database only on a miss.

Staleness is bounded twice over:

* an entry lives at most ``USER_CACHE_TTL`` seconds;
* every entry remembers the user's *generation*, a counter in Redis that
  :func:`invalidate_user` / :func:`invalidate_user_sync` increment. A lookup reads the
  generation (one ``GET``) and drops the entry if it moved, so an invalidation reaches every
  process at once. The generation is read *before* the database, so an invalidation racing
  a miss leaves an entry that the next lookup already sees as stale.

Without Redis the cache and its invalidation are in-process (one process only).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from secure_ws.codes import Reason
from secure_ws.conf import get_settings, register_cache_clearer
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.state import command_deadline, get_redis, get_sync_redis, key

#: Seconds a generation counter outlives its last invalidation (far above any cache TTL).
GENERATION_TTL = 86400

#: Entries kept at most per process; the oldest are evicted first.
MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class UserState:
    """A cached user: the model instance (``None``: no such user) and when it was read."""

    user: Any
    generation: int
    fetched_at: float


_entries: dict[str, UserState] = {}


def _generation_key(user_id: str) -> str:
    return key("usergen", user_id)


def load_user(lookup_field: str, user_id: str) -> Any:
    """Return the user whose ``lookup_field`` is ``user_id`` from the database, or ``None``.

    Raises:
        Refused: ``credentials_invalid`` when ``user_id`` is not a valid value for the field.
        DatabaseError: the database could not be read.
    """
    user_model = get_user_model()
    try:
        return user_model._default_manager.get(**{lookup_field: user_id})
    except user_model.DoesNotExist:
        return None
    except (ValueError, TypeError, ValidationError) as exc:
        raise Refused(Reason.CREDENTIALS_INVALID, "malformed user id claim") from exc


_load_user_async = database_sync_to_async(load_user)


async def _read_generation(user_id: str) -> int:
    client = get_redis()
    if client is None:
        return 0
    try:
        async with command_deadline():
            value = await client.get(_generation_key(user_id))
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("user state: Redis unavailable") from exc
    return int(value) if value is not None else 0


async def get_user_state(
    user_id: str, lookup_field: str = "id", generation: int | None = None
) -> Any:
    """Return a private copy of the user whose ``lookup_field`` is ``user_id``, or ``None``.

    ``generation`` is the user's generation when the caller already read it (the gate's
    admission script does, in the handshake's one round trip); otherwise it is read here.

    Raises:
        Refused: ``credentials_invalid`` when ``user_id`` is not a valid value for the field.
        BackendUnavailable: Redis or the database could not be read (fail closed).
    """
    ttl = get_settings().USER_CACHE_TTL
    if generation is None:
        generation = await _read_generation(user_id)
    now = time.monotonic()
    entry = _entries.get(user_id)
    if entry is None or entry.generation != generation or now - entry.fetched_at >= ttl:
        try:
            user = await _load_user_async(lookup_field, user_id)
        except DatabaseError as exc:
            raise BackendUnavailable("user state: database unavailable") from exc
        entry = UserState(user, generation, now)
        if ttl > 0:
            if len(_entries) >= MAX_ENTRIES:
                _entries.pop(next(iter(_entries)))
            _entries[user_id] = entry
    # Connections never share one instance: a consumer may set attributes on its user.
    return copy.copy(entry.user) if entry.user is not None else None


def _bump_sync(user_id: str) -> None:
    _entries.pop(user_id, None)
    client = get_sync_redis()
    if client is not None:
        pipe = client.pipeline(transaction=True)
        pipe.incr(_generation_key(user_id))
        pipe.expire(_generation_key(user_id), GENERATION_TTL)
        pipe.execute()


def invalidate_user_sync(user_id: int | str) -> None:
    """Drop ``user_id``'s cached state on every process (call after the change is committed).

    Raises:
        redis.exceptions.RedisError: when Redis is configured and cannot be written; the
            caller must not pretend the user was invalidated.
    """
    _bump_sync(str(user_id))


async def invalidate_user(user_id: int | str) -> None:
    """Async form of :func:`invalidate_user_sync`."""
    user_key = str(user_id)
    _entries.pop(user_key, None)
    client = get_redis()
    if client is None:
        return
    async with command_deadline(), client.pipeline(transaction=True) as pipe:
        pipe.incr(_generation_key(user_key))
        pipe.expire(_generation_key(user_key), GENERATION_TTL)
        await pipe.execute()


def clear_local_cache() -> None:
    """Forget every cached user of this process (tests, and ``setting_changed``)."""
    _entries.clear()


register_cache_clearer(clear_local_cache)
