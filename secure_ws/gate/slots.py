"""Connection-cap slots once taken: one heartbeat and one releaser per process, not per socket.

A slot is a connection id in its user's and its IP's sorted sets, scored by the time it
stops counting (:mod:`secure_ws.gate.caps`). While the connection lives, the process's
:class:`SlotHeartbeat` moves every live slot's deadline forward once per interval
(``CONNECTION_SLOT_TTL / 3``) in one pipelined round trip for all of them; a killed process
stops moving them, and its slots stop counting after ``CONNECTION_SLOT_TTL`` on their own.

Releases are group-committed by the process's :class:`SlotReleaser`: the first release goes
out at once; releases that arrive while it is in flight wait for it and then leave together
in the next call. A quiet process pays one round trip per close, a close storm (thousands
of sockets ending at once) a handful, so it does not queue ahead of new handshakes on the
shared Redis pool. A failed release is retried with backoff until Redis takes it or the
slot would have expired anyway, so an outage leaks no cap slot.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Any

import redis.exceptions

from secure_ws.state import LuaScript, command_deadline, get_redis, register_close_hook

logger = logging.getLogger("secure_ws.gate")

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

#: KEYS[i]: a slot set; ARGV[i]: the slot id to remove from it (many slots in one call).
_RELEASE = LuaScript("""
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return 0
""")

#: (set, member) pairs per script call in a pipeline, so no call carries an unbounded list.
CHUNK = 500

#: In-process slot sets (no Redis: one process only).
local_slots: defaultdict[str, set[str]] = defaultdict(set)


class ConnectionSlot:
    """One connection's place in its user's and its IP's caps, held until :meth:`release`."""

    __slots__ = ("keys", "released", "slot_id", "ttl")

    def __init__(self, slot_id: str, keys: list[str], ttl: int) -> None:
        self.slot_id = slot_id
        self.keys = keys
        self.ttl = ttl
        self.released = False

    def start_heartbeat(self) -> None:
        """Keep the slot alive while the connection is open (Redis only)."""
        if get_redis() is not None:
            _for_loop(_heartbeats, SlotHeartbeat).add(self)

    async def release(self) -> None:
        """Give the slot back, once; never raises (a failed release is retried, see above)."""
        if self.released:
            return
        self.released = True
        heartbeat = _heartbeats.get(asyncio.get_running_loop())
        if heartbeat is not None:
            heartbeat.discard(self)
        if get_redis() is None:
            for slot_key in self.keys:
                local_slots[slot_key].discard(self.slot_id)
                if not local_slots[slot_key]:
                    del local_slots[slot_key]
            return
        await _for_loop(_releasers, SlotReleaser).release(self)


async def _run_in_chunks(script: LuaScript, pairs: list[tuple[str, list[object]]]) -> bool:
    """Run ``script`` over (key, args) pairs, :data:`CHUNK` per call, in one round trip.

    One round trip whatever the number of slots (a ``NOSCRIPT`` reply loads the script and
    sends the pipeline again). Returns False if anything failed (the caller logs it).
    """
    client = get_redis()
    if client is None or not pairs:
        return True
    chunks = [pairs[start : start + CHUNK] for start in range(0, len(pairs), CHUNK)]
    if len(chunks) == 1:
        # One call: a plain EVALSHA (cheaper than a pipeline; reloads on NOSCRIPT itself).
        keys = [slot_key for slot_key, _ in chunks[0]]
        try:
            await script(client, keys, [arg for _, slot_args in chunks[0] for arg in slot_args])
        except (redis.exceptions.RedisError, OSError):
            return False
        return True
    try:
        async with command_deadline():
            for _ in range(2):
                pipe = client.pipeline(transaction=False)
                for chunk in chunks:
                    keys = [slot_key for slot_key, _ in chunk]
                    args = [arg for _, slot_args in chunk for arg in slot_args]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
                results = await pipe.execute(raise_on_error=False)
                if not any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                    break
                await client.script_load(script.source)
    except (redis.exceptions.RedisError, OSError):
        return False
    return not any(isinstance(result, Exception) for result in results)


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
        pairs: list[tuple[str, list[object]]] = [
            (slot_key, [slot.slot_id, slot.ttl * 1000])
            for slot in list(self.slots.values())
            for slot_key in slot.keys
        ]
        if not await _run_in_chunks(_REFRESH, pairs):
            # The slots may lapse and count less until the next beat; never fail open on
            # auth because of it, and never crash the connection.
            logger.warning("connection slot refresh failed for some of %d slots", len(pairs))


class SlotReleaser:
    """Group commit of slot releases: one call in flight, the next batch gathers behind it.

    A release with nothing in flight is sent at once by the closing task itself (no extra
    task, no extra hop); releases that arrive meanwhile wait and leave together.
    """

    def __init__(self) -> None:
        self._pending: list[ConnectionSlot] = []
        self._done: asyncio.Future[None] | None = None
        self._busy = False

    async def release(self, slot: ConnectionSlot) -> None:
        """Remove ``slot`` now or with the next batch, and wait until it was sent."""
        if self._busy:
            self._pending.append(slot)
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._done)
            return
        self._busy = True
        try:
            await self._send([slot])
        finally:
            self._busy = False
            if self._pending:
                self._busy = True
                asyncio.get_running_loop().create_task(self._flush_pending())

    async def _send(self, batch: list[ConnectionSlot]) -> None:
        pairs: list[tuple[str, list[object]]] = [
            (slot_key, [slot.slot_id]) for slot in batch for slot_key in slot.keys
        ]
        if not await _run_in_chunks(_RELEASE, pairs):
            logger.warning("connection slot release failed for %d slots; retrying", len(batch))
            loop = asyncio.get_running_loop()
            give_up = loop.time() + max(slot.ttl for slot in batch)
            task = loop.create_task(_release_until_expired(pairs, give_up))
            _pending_releases.add(task)
            task.add_done_callback(_pending_releases.discard)

    async def _flush_pending(self) -> None:
        try:
            while self._pending:
                batch, done = self._pending, self._done
                self._pending, self._done = [], None
                try:
                    await self._send(batch)
                finally:
                    # Whatever happened, no closing connection waits for ever.
                    if done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._busy = False
            if self._done is not None and not self._done.done():
                # Cancelled mid-batch (loop shutting down): the rest will expire by itself.
                self._done.set_result(None)
                self._pending, self._done = [], None


#: Longest wait between two attempts to give back slots whose release failed, in seconds.
RELEASE_RETRY_MAX_BACKOFF = 1.0
_pending_releases: set[asyncio.Task[None]] = set()  # strong references while they run


async def _release_until_expired(pairs: list[tuple[str, list[object]]], give_up: float) -> None:
    """Retry a failed release until Redis takes it or the slots would have expired anyway.

    A Redis restart or a Sentinel failover closes connections while Redis cannot hear their
    release; without a retry each would keep counting against its user's and its IP's caps
    for up to ``CONNECTION_SLOT_TTL`` seconds after Redis is back (ZREM is idempotent).
    """
    loop = asyncio.get_running_loop()
    backoff = 0.05
    while loop.time() < give_up:
        await asyncio.sleep(backoff)
        backoff = min(RELEASE_RETRY_MAX_BACKOFF, backoff * 2)
        if get_redis() is None or await _run_in_chunks(_RELEASE, pairs):
            return


async def _cancel_pending_releases() -> None:
    """Stop the running loop's release retries before its Redis client closes."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _pending_releases if task.get_loop() is loop]
    for task in mine:
        task.cancel()
    await asyncio.gather(*mine, return_exceptions=True)


register_close_hook(_cancel_pending_releases)


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotHeartbeat] = (
    weakref.WeakKeyDictionary()
)
_releasers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotReleaser] = (
    weakref.WeakKeyDictionary()
)


def _for_loop(table: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any], cls: type) -> Any:
    loop = asyncio.get_running_loop()
    found = table.get(loop)
    if found is None:
        found = table[loop] = cls()
    return found


def heartbeat_for_loop() -> SlotHeartbeat:
    """Return the running loop's heartbeat (tests look at its task)."""
    heartbeat: SlotHeartbeat = _for_loop(_heartbeats, SlotHeartbeat)
    return heartbeat
