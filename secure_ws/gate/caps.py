"""Gate step 6: how many connections one user and one client IP may hold at once.

Every open WebSocket pins a socket, a task and memory on a server process; without a cap
one account or one address can hold thousands (OWASP WebSocket cheat sheet, "limit the
number of connections"). Slots are counted across every process through Redis: one sorted
set per user and per IP (IPv6 by its /64) whose members are connection ids scored by the
time the slot expires. A live connection refreshes its score every
``CONNECTION_SLOT_TTL / 3`` seconds and removes it when it ends; a slot of a crashed
process stops counting after ``CONNECTION_SLOT_TTL`` seconds on its own. Acquiring checks
and takes both slots in one Lua script (one round trip, atomic). Without Redis the counts
are in-process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Any

import redis.exceptions

from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.connection import get_connection_info
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.base import ASGIApp, Scope
from secure_ws.gate.refusal import refuse
from secure_ws.gate.throttle import rate_key_for
from secure_ws.state import LuaScript, get_redis, key, register_close_hook

logger = logging.getLogger("secure_ws.gate")

#: KEYS: slot sets; ARGV[1] slot id, ARGV[2] ttl ms, ARGV[3..] limits. Returns 0 or the
#: 1-based index of the first full set.
_ACQUIRE = LuaScript("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
""")

#: KEYS[i]: a slot set; ARGV[2i-1]: the slot id in it, ARGV[2i]: its ttl in ms. Moves the
#: expiry of every live slot of a process forward in one call.
_REFRESH = LuaScript("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local ttl = tonumber(ARGV[2 * i])
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[2 * i - 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
""")

#: KEYS: slot sets; ARGV[1]: the slot id to remove from each.
_RELEASE = LuaScript("""
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 0
""")

#: Slots refreshed per script call, so one call never carries an unbounded argument list.
REFRESH_CHUNK = 500

_local_slots: defaultdict[str, set[str]] = defaultdict(set)


def _slot_keys(user_id: object, client_ip: str) -> list[tuple[str, Reason]]:
    slots = []
    if user_id is not None:
        slots.append((key("caps", "user", user_id), Reason.USER_CONNECTION_LIMIT))
    slots.append((key("caps", "ip", rate_key_for(client_ip)), Reason.IP_CONNECTION_LIMIT))
    return slots


class ConnectionSlot:
    """One connection's place in its user's and its IP's caps, held until :meth:`release`."""

    __slots__ = ("keys", "slot_id", "ttl")

    def __init__(self, slot_id: str, keys: list[str], ttl: int) -> None:
        self.slot_id = slot_id
        self.keys = keys
        self.ttl = ttl

    def start_heartbeat(self) -> None:
        """Keep the slot alive while the connection is open (Redis only)."""
        if get_redis() is not None:
            _heartbeat_for_loop().add(self)

    async def release(self) -> None:
        """Give the slot back; never raises (the slot expires by itself if this fails)."""
        heartbeat = _heartbeats.get(asyncio.get_running_loop())
        if heartbeat is not None:
            heartbeat.discard(self)
        client = get_redis()
        if client is None:
            for slot_key in self.keys:
                _local_slots[slot_key].discard(self.slot_id)
                if not _local_slots[slot_key]:
                    del _local_slots[slot_key]
            return
        try:
            await _RELEASE(client, self.keys, [self.slot_id])
        except (redis.exceptions.RedisError, OSError):
            logger.warning("connection slot release failed for %s; retrying", self.slot_id)
            loop = asyncio.get_running_loop()
            task = loop.create_task(_release_until_expired(self, loop.time() + self.ttl))
            _pending_releases.add(task)
            task.add_done_callback(_pending_releases.discard)


#: Longest wait between two attempts to give back a slot whose release failed, in seconds.
RELEASE_RETRY_MAX_BACKOFF = 1.0
_pending_releases: set[asyncio.Task[None]] = set()  # strong references while they run


async def _release_until_expired(slot: ConnectionSlot, give_up: float) -> None:
    """Retry a failed release until Redis takes it or the slot would have expired anyway.

    A Redis restart or a Sentinel failover closes connections while Redis cannot hear their
    release; without a retry each would keep counting against its user's and its IP's caps
    for up to ``CONNECTION_SLOT_TTL`` seconds after Redis is back (ZREM is idempotent).
    """
    loop = asyncio.get_running_loop()
    backoff = 0.05
    while loop.time() < give_up:
        await asyncio.sleep(backoff)
        backoff = min(RELEASE_RETRY_MAX_BACKOFF, backoff * 2)
        client = get_redis()
        if client is None:
            return
        try:
            await _RELEASE(client, slot.keys, [slot.slot_id])
        except (redis.exceptions.RedisError, OSError):
            continue
        return


async def _cancel_pending_releases() -> None:
    """Stop the running loop's release retries before its Redis client closes (tests)."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _pending_releases if task.get_loop() is loop]
    for task in mine:
        task.cancel()
    await asyncio.gather(*mine, return_exceptions=True)


register_close_hook(_cancel_pending_releases)


class SlotHeartbeat:
    """One task per event loop that refreshes every live slot, every third of the shortest TTL.

    One timer and one Redis call per interval for the whole process, instead of one task per
    connection: ten thousand idle connections cost one script call every 20 seconds.
    """

    def __init__(self) -> None:
        self.slots: dict[str, ConnectionSlot] = {}
        self._task: asyncio.Task[None] | None = None
        self._interval = 0.0

    def add(self, slot: ConnectionSlot) -> None:
        """Refresh ``slot`` until it is discarded."""
        self.slots[slot.slot_id] = slot
        interval = max(slot.ttl / 3, 0.1)
        if self._task is None or self._task.done() or interval < self._interval:
            if self._task is not None:
                self._task.cancel()
            self._interval = interval
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, slot: ConnectionSlot) -> None:
        """Stop refreshing ``slot``; stop the task when nothing is left to refresh."""
        self.slots.pop(slot.slot_id, None)
        if not self.slots and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while self.slots:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def refresh(self) -> None:
        """Move every live slot's expiry forward now; failures are logged, never raised."""
        client = get_redis()
        if client is None:
            return
        pairs = [(k, s.slot_id, s.ttl * 1000) for s in list(self.slots.values()) for k in s.keys]
        for start in range(0, len(pairs), REFRESH_CHUNK):
            chunk = pairs[start : start + REFRESH_CHUNK]
            args: list[object] = []
            for _, slot_id, ttl_ms in chunk:
                args += [slot_id, ttl_ms]
            try:
                await _REFRESH(client, [k for k, _, _ in chunk], args)
            except (redis.exceptions.RedisError, OSError):
                # The slots may lapse and count less until the next beat; never fail open
                # on auth because of it, and never crash the connection.
                logger.warning("connection slot refresh failed for %d slots", len(chunk))


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotHeartbeat] = (
    weakref.WeakKeyDictionary()
)


def _heartbeat_for_loop() -> SlotHeartbeat:
    loop = asyncio.get_running_loop()
    heartbeat = _heartbeats.get(loop)
    if heartbeat is None:
        heartbeat = _heartbeats[loop] = SlotHeartbeat()
    return heartbeat


async def acquire_slot(
    slot_id: str, user_id: object, client_ip: str, user_limit: int, ip_limit: int, ttl: int
) -> ConnectionSlot:
    """Take a slot for ``slot_id`` in the user's and the IP's caps.

    Raises:
        Refused: ``user_connection_limit`` or ``ip_connection_limit``.
        BackendUnavailable: Redis is configured but did not answer (fail closed).
    """
    slots = _slot_keys(user_id, client_ip)
    limits = [user_limit if r is Reason.USER_CONNECTION_LIMIT else ip_limit for _, r in slots]
    keys = [slot_key for slot_key, _ in slots]
    client = get_redis()
    if client is None:
        for (slot_key, reason), limit in zip(slots, limits, strict=True):
            if len(_local_slots[slot_key]) >= limit:
                raise Refused(reason, "connection cap reached")
        for slot_key in keys:
            _local_slots[slot_key].add(slot_id)
        return ConnectionSlot(slot_id, keys, ttl)
    try:
        result: Any = await _ACQUIRE(client, keys, [slot_id, ttl * 1000, *limits])
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("connection caps: Redis unavailable") from exc
    full = int(result)
    if full:
        raise Refused(slots[full - 1][1], "connection cap reached")
    return ConnectionSlot(slot_id, keys, ttl)


class ConnectionCapMiddleware:
    """Hold a per-user and per-IP connection slot while the inner application runs.

    Args:
        application: the inner ASGI application.
        max_per_user: connections per user (None: ``MAX_CONNECTIONS_PER_USER``).
        max_per_ip: connections per client IP (None: ``MAX_CONNECTIONS_PER_IP``).
        slot_ttl: seconds a slot outlives a crashed process (None: ``CONNECTION_SLOT_TTL``).
    """

    def __init__(
        self,
        application: ASGIApp,
        max_per_user: int | None = None,
        max_per_ip: int | None = None,
        slot_ttl: int | None = None,
    ) -> None:
        self.application = application
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.slot_ttl = slot_ttl

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.application(scope, receive, send)
            return
        settings = get_settings()
        info = get_connection_info(scope)
        try:
            slot = await acquire_slot(
                info.connection_id,
                info.user_id,
                info.client_ip,
                settings.MAX_CONNECTIONS_PER_USER
                if self.max_per_user is None
                else self.max_per_user,
                settings.MAX_CONNECTIONS_PER_IP if self.max_per_ip is None else self.max_per_ip,
                settings.CONNECTION_SLOT_TTL if self.slot_ttl is None else self.slot_ttl,
            )
        except Refused as refusal:
            await refuse(scope, receive, send, refusal)
            return
        slot.start_heartbeat()
        try:
            await self.application(scope, receive, send)
        finally:
            await slot.release()
