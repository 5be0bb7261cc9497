"""One Redis round trip per handshake: throttle, ticket, user state, revocation and caps.

The gate's steps each used to ask Redis on their own (bucket script, ticket ``GETDEL``,
generation ``GET``, revoked-session ``EXISTS``, caps script): four or five round trips per
handshake, each about 0.1 ms of redis-py CPU on the event loop. :data:`ADMIT` does them in
one server-side script, atomically, in the gate's order:

1. the per-IP handshake bucket (a refused attempt stops here: no ticket spent, no slot);
2. the one-time ticket, spent whatever follows (``GETDEL``), bound to its Origin;
3. the user's generation (user-state cache watermark) and whether the login session was
   revoked (a revoked session takes no slot);
4. the per-user and per-IP slots, checked and taken together.

The steps stay separate middlewares: the throttle step *defers* its token to this call
(:func:`defer_throttle`) and every refusal settles a deferred token first
(:func:`settle_throttle`), so every attempt still counts and a client whose bucket is empty
still sees ``handshake_rate_limited`` whatever else is wrong with its handshake. The
credentials step reads the verdicts in its own order (user, password, revocation, caps), so
the refusal reasons are those of the separate steps. Without Redis the same request is
answered from in-process state.

Keys of a ticket's user are only known inside the script (the ticket names the user), so
the script builds them from ``KEY_PREFIX``: a single Redis or a Sentinel-managed primary,
not Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.exceptions

from secure_ws.codes import Reason
from secure_ws.conf import get_settings
from secure_ws.exceptions import BackendUnavailable, Refused
from secure_ws.gate.slots import ConnectionSlot, local_slots
from secure_ws.gate.ticket_store import parse_grant, take_local_ticket
from secure_ws.gate.tokens import session_revoked
from secure_ws.state import LuaScript, get_redis, key

#: KEYS: 1 bucket, 2 IP slots, 3 user slots, 4 user generation, 5 revoked sid, 6 ticket
#: ('' when not asked). ARGV: 1 throttle?, 2 rate/s, 3 burst, 4 caps?, 5 slot id,
#: 6 ttl ms, 7 user limit, 8 IP limit, 9 key prefix, 10 ticket origin.
#: Returns {verdict, generation, ticket record or nil, ticket user id or nil}.
ADMIT = LuaScript("""
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == '1' then
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local rate = tonumber(ARGV[2])
  local burst = tonumber(ARGV[3])
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = tokens >= 1
  if allowed then
    tokens = tokens - 1
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
  if not allowed then
    return {'throttled', 0, false, false}
  end
end
local user_slots, gen_key, sid_key = KEYS[3], KEYS[4], KEYS[5]
local record, uid = false, false
if KEYS[6] ~= '' then
  record = redis.call('GETDEL', KEYS[6])
  if not record then
    return {'ticket_invalid', 0, false, false}
  end
  local ok, parsed = pcall(cjson.decode, record)
  if not ok or type(parsed) ~= 'table' or ARGV[10] == '' or parsed['origin'] ~= ARGV[10]
      or type(parsed['user_id']) ~= 'string' then
    return {'ticket_invalid', 0, false, false}
  end
  uid = parsed['user_id']
  gen_key = ARGV[9] .. ':usergen:' .. uid
  if ARGV[4] == '1' then
    user_slots = ARGV[9] .. ':caps:user:' .. uid
  end
  if type(parsed['session_id']) == 'string' and parsed['session_id'] ~= '' then
    sid_key = ARGV[9] .. ':revoked_sid:' .. parsed['session_id']
  end
end
local gen = 0
if gen_key ~= '' then
  gen = tonumber(redis.call('GET', gen_key) or '0') or 0
end
if sid_key ~= '' and redis.call('EXISTS', sid_key) == 1 then
  return {'revoked', gen, record, uid}
end
if ARGV[4] == '1' then
  local ttl = tonumber(ARGV[6])
  local sets = {}
  if user_slots ~= '' then
    sets[#sets + 1] = {user_slots, tonumber(ARGV[7]), 'user_cap'}
  end
  sets[#sets + 1] = {KEYS[2], tonumber(ARGV[8]), 'ip_cap'}
  for i = 1, #sets do
    redis.call('ZREMRANGEBYSCORE', sets[i][1], '-inf', now_ms)
    if redis.call('ZCARD', sets[i][1]) >= sets[i][2] then
      return {sets[i][3], gen, record, uid}
    end
  end
  for i = 1, #sets do
    redis.call('ZADD', sets[i][1], now_ms + ttl, ARGV[5])
    redis.call('PEXPIRE', sets[i][1], ttl)
  end
end
return {'ok', gen, record, uid}
""")

#: Scope key of the handshake's :class:`Admission` (popped when the gate is done with it).
ADMISSION_SCOPE_KEY = "secure_ws.admission"

#: Verdicts of :data:`ADMIT` that refuse for a cap, and the reason each gives.
CAP_REASONS = {"user_cap": Reason.USER_CONNECTION_LIMIT, "ip_cap": Reason.IP_CONNECTION_LIMIT}


@dataclass(frozen=True, slots=True)
class ThrottleRequest:
    """A handshake token to take: the bucket's key, its refill per second and its size."""

    bucket_key: str
    rate_per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class CapRequest:
    """Slots to take for ``slot_id``: the IP's set, the limits and the slot lifetime (s)."""

    slot_id: str
    ip_key: str
    user_limit: int
    ip_limit: int
    ttl: int


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """Everything one handshake asks of shared state; any part may be left out."""

    throttle: ThrottleRequest | None = None
    ticket_key: str | None = None
    origin: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    caps: CapRequest | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """The script's answer.

    Attributes:
        verdict: ``ok``, ``ticket_invalid``, ``revoked``, ``user_cap`` or ``ip_cap``.
        generation: the user's generation (``None``: not read, no Redis).
        ticket_record: the spent ticket's stored record, when one was asked for and valid.
        slot: the slot taken when ``verdict`` is ``ok`` and caps were asked for.
    """

    verdict: str
    generation: int | None = None
    ticket_record: str | None = None
    slot: ConnectionSlot | None = None

    async def release(self) -> None:
        """Give back the slot (a later check refused the connection); never raises."""
        if self.slot is not None:
            await self.slot.release()


class Admission:
    """A handshake's pending requests, carried in the scope between the gate's steps."""

    __slots__ = ("slot", "throttle")

    def __init__(self) -> None:
        self.throttle: ThrottleRequest | None = None
        self.slot: ConnectionSlot | None = None


def admission_for(scope: dict[str, Any]) -> Admission:
    """Return the scope's :class:`Admission`, creating it on first use."""
    found = scope.get(ADMISSION_SCOPE_KEY)
    if not isinstance(found, Admission):
        found = scope[ADMISSION_SCOPE_KEY] = Admission()
    return found


def defer_throttle(scope: dict[str, Any], request: ThrottleRequest) -> None:
    """Take the handshake token with the handshake's admission call, not now."""
    admission_for(scope).throttle = request


def take_throttle(scope: dict[str, Any]) -> ThrottleRequest | None:
    """Return the deferred handshake token and forget it (it is taken exactly once)."""
    found = scope.get(ADMISSION_SCOPE_KEY)
    if not isinstance(found, Admission):
        return None
    request, found.throttle = found.throttle, None
    return request


async def settle_throttle(scope: dict[str, Any]) -> None:
    """Take a deferred handshake token now (before a refusal, or before database work).

    Raises:
        Refused: ``handshake_rate_limited``; ``BackendUnavailable`` (fail closed).
    """
    request = take_throttle(scope)
    if request is not None:
        await run_admission(AdmissionRequest(throttle=request))


def _keys_and_args(request: AdmissionRequest) -> tuple[list[str], list[object]]:
    throttle, caps = request.throttle, request.caps
    user_keyed = request.user_id is not None and request.ticket_key is None
    keys = [
        throttle.bucket_key if throttle else "",
        caps.ip_key if caps else "",
        key("caps", "user", request.user_id) if caps and user_keyed else "",
        key("usergen", request.user_id) if user_keyed else "",
        key("revoked_sid", request.session_id) if request.session_id and user_keyed else "",
        request.ticket_key or "",
    ]
    args: list[object] = [
        1 if throttle else 0,
        throttle.rate_per_second if throttle else 0,
        throttle.burst if throttle else 0,
        1 if caps else 0,
        caps.slot_id if caps else "",
        caps.ttl * 1000 if caps else 0,
        caps.user_limit if caps else 0,
        caps.ip_limit if caps else 0,
        get_settings().KEY_PREFIX,
        request.origin or "",
    ]
    return keys, args


async def run_admission(request: AdmissionRequest) -> Admitted:
    """Ask shared state everything ``request`` names, in one round trip with Redis.

    Raises:
        Refused: ``handshake_rate_limited`` (nothing else was done).
        BackendUnavailable: Redis did not answer or the script failed (fail closed).
    """
    client = get_redis()
    if client is None:
        return await _run_local(request)
    keys, args = _keys_and_args(request)
    try:
        reply: Any = await ADMIT(client, keys, args)
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BackendUnavailable("admission: Redis unavailable") from exc
    verdict = _text(reply[0])
    if verdict == "throttled":
        raise Refused(Reason.HANDSHAKE_RATE_LIMITED, "handshake bucket empty")
    record = _text(reply[2]) if reply[2] is not None else None
    slot = None
    if verdict == "ok" and request.caps is not None:
        user_id = _text(reply[3]) if reply[3] is not None else request.user_id
        slot_keys = [key("caps", "user", user_id)] if user_id is not None else []
        slot = ConnectionSlot(
            request.caps.slot_id, [*slot_keys, request.caps.ip_key], request.caps.ttl
        )
    return Admitted(verdict, int(reply[1]), record, slot)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _run_local(request: AdmissionRequest) -> Admitted:
    """The same answer from in-process state (one process only).

    Without Redis the throttle step takes its token at once and never defers it; a deferred
    token here means ``REDIS_URL`` changed mid-handshake: refuse rather than skip it.
    """
    if request.throttle is not None:
        raise BackendUnavailable("admission: deferred handshake token but no Redis")
    user_id, session_id, record = request.user_id, request.session_id, None
    if request.ticket_key is not None:
        record = take_local_ticket(request.ticket_key)
        owner = _ticket_owner(record, request.origin)
        if owner is None:
            return Admitted("ticket_invalid")
        user_id, session_id = owner
    if session_id and await session_revoked(session_id):
        return Admitted("revoked", None, record)
    caps = request.caps
    if caps is None:
        return Admitted("ok", None, record)
    sets = [(caps.ip_key, caps.ip_limit, "ip_cap")]
    if user_id is not None:
        sets.insert(0, (key("caps", "user", user_id), caps.user_limit, "user_cap"))
    for slot_key, limit, verdict in sets:
        if len(local_slots[slot_key]) >= limit:
            return Admitted(verdict, None, record)
    for slot_key, _, _ in sets:
        local_slots[slot_key].add(caps.slot_id)
    slot = ConnectionSlot(caps.slot_id, [slot_key for slot_key, _, _ in sets], caps.ttl)
    return Admitted("ok", None, record, slot)


def _ticket_owner(record: str | None, origin: str | None) -> tuple[str, str | None] | None:
    """The (user id, session id) a ticket record names, if it is valid from ``origin``."""
    grant = parse_grant(record, origin)
    return None if grant is None else (grant.user_id, grant.session_id)
