"""One Redis pub/sub subscription per process: how a revocation reaches every process.

:func:`publish` (or :func:`publish_sync`) sends a
:class:`~secure_ws.sessions.registry.SessionMessage` once, on the channel
``<KEY_PREFIX>:sessions``; the :class:`Subscriber` of each process hears it and applies it
to that process's :class:`~secure_ws.sessions.registry.ConnectionRegistry`. The subscriber
starts lazily, in the running loop, when the first connection registers, on a connection of
the process's ``REDIS_URL`` pool (:func:`secure_ws.state.get_redis`). Without
``REDIS_URL`` there is one process and messages are applied in-process.

Fail closed. Pub/sub has no replay: a process whose subscription is down does not hear a
revocation published meanwhile, and cannot learn later that it missed one. So:

* a connection is accepted only while the subscription is confirmed (``SUBSCRIBE`` answered);
  otherwise the handshake is refused ``backend_unavailable`` (HTTP 403, or 1013 in close
  mode) — :func:`ensure_subscribed` raises :class:`~secure_ws.exceptions.BackendUnavailable`;
* when the subscription drops (read error, a ``PING`` unanswered for ``SOCKET_TIMEOUT``
  seconds, or a second ``subscribe`` confirmation, which means the client reconnected
  behind our back), every registered connection is closed 1013 ``backend_unavailable``
  (4013 on daphne): the client reconnects with backoff, through the gate, which checks
  revocation state again;
* the subscriber keeps resubscribing (backoff up to :data:`MAX_BACKOFF` seconds) and new
  connections are accepted again as soon as ``SUBSCRIBE`` is confirmed.

Behind a Redis Sentinel (``REDIS_HOST``, or a channel layer that names one) the subscription
is opened on whatever master the Sentinels name. Publishers ask them too, so a subscription
left on a former master would hear nothing: every ``HEALTH_INTERVAL`` of silence the
subscriber asks the Sentinels again, and a master that moved counts as a lost subscription
(fail closed, then resubscribe on the new master).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from secure_ws.codes import CloseCode, Reason
from secure_ws.exceptions import BackendUnavailable
from secure_ws.sessions.registry import (
    ConnectionRegistry,
    SessionMessage,
    apply_everywhere,
    current_registry,
    get_registry,
)
from secure_ws.state import (
    SOCKET_TIMEOUT,
    command_deadline,
    get_redis,
    get_sync_redis,
    key,
    register_close_hook,
)

logger = logging.getLogger(__name__)

#: Seconds of silence on the subscription before the subscriber sends a ``PING``.
HEALTH_INTERVAL = 5.0
#: Longest wait between two resubscription attempts, in seconds.
MAX_BACKOFF = 1.0


def channel_name() -> str:
    """Return the pub/sub channel of this deployment (under ``KEY_PREFIX``)."""
    return key("sessions")


class SubscriptionLost(Exception):
    """The subscription stopped answering or was re-established (messages may be lost)."""


class Subscriber:
    """The one pub/sub subscription of a registry (a process): listens, applies, fails closed."""

    def __init__(self, registry: ConnectionRegistry, client: redis.asyncio.Redis) -> None:
        self.registry = registry
        self.client = client
        self.channel = channel_name()
        #: True only while ``SUBSCRIBE`` is confirmed and the connection answers.
        self.up = False
        #: Set once the first attempt has succeeded or failed.
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def ready(self) -> bool:
        """Return whether the subscription is up; wait for the first attempt only."""
        if self.up:
            return True
        if not self._attempted.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SOCKET_TIMEOUT):
                    await self._attempted.wait()
        return self.up

    async def stop(self) -> None:
        """Stop listening; the registry's connections are left alone (shutdown, tests)."""
        self.up = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self.client.pubsub()
            try:
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, SubscriptionLost) as exc:
                if self._lost(exc):
                    backoff = 0.05
            except Exception as exc:
                logger.exception("revocation subscriber failed")
                if self._lost(exc):
                    backoff = 0.05
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _listen(self, pubsub: Any) -> None:
        async with command_deadline():
            await pubsub.subscribe(self.channel)
        confirmed = False
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(timeout=HEALTH_INTERVAL)
            now = time.monotonic()
            if message is None:
                if ping_sent is None:
                    await self._check_master(pubsub)
                    await pubsub.ping()
                    ping_sent = now
                elif now - ping_sent > SOCKET_TIMEOUT:
                    raise SubscriptionLost("PING unanswered")
                continue
            kind = message.get("type")
            if kind == "subscribe":
                if confirmed:
                    raise SubscriptionLost("resubscribed after a reconnect")
                confirmed = True
                self.up = True
                self._attempted.set()
                logger.info("revocation subscription up: channel=%s", self.channel)
            elif kind == "pong":
                ping_sent = None
            elif kind == "message":
                ping_sent = None
                parsed = SessionMessage.decode(message.get("data") or b"")
                if parsed is None:
                    logger.warning("dropped a malformed revocation message")
                    continue
                self.registry.apply(parsed)

    async def _check_master(self, pubsub: Any) -> None:
        """Raise :class:`SubscriptionLost` when the Sentinels name another master than ours."""
        pool = self.client.connection_pool
        connection = pubsub.connection
        if not isinstance(pool, SentinelConnectionPool) or connection is None:
            return
        async with command_deadline():
            master = await pool.get_master_address()  # type: ignore[no-untyped-call]
        if (connection.host, int(connection.port)) != (master[0], int(master[1])):
            raise SubscriptionLost("the master moved")

    def _lost(self, exc: BaseException) -> bool:
        """Fail closed after a loss; return whether the subscription had been up."""
        was_up, self.up = self.up, False
        self._attempted.set()
        closed = self.registry.close_all(CloseCode.TRY_AGAIN_LATER, Reason.BACKEND_UNAVAILABLE)
        if was_up or closed:
            logger.warning(
                "revocation subscription lost (%s): closing %d connection(s); "
                "new ones are refused until it is back",
                type(exc).__name__,
                closed,
            )
        return was_up


async def ensure_subscribed() -> ConnectionRegistry:
    """Return the running loop's registry once revocations can reach it.

    Starts the subscriber on the first call in a loop (or after ``REDIS_URL``'s client or
    ``KEY_PREFIX`` changed). Without ``REDIS_URL`` revocations are applied in-process: always ready.

    Raises:
        BackendUnavailable: the subscription is not confirmed (fail closed: refuse).
    """
    registry = get_registry()
    client = get_redis()
    if client is None:
        return registry
    subscriber: Subscriber | None = registry.subscriber
    if (
        subscriber is None
        or subscriber.client is not client
        or subscriber.channel != channel_name()  # KEY_PREFIX changed (override_settings)
    ):
        if subscriber is not None:
            await subscriber.stop()
        subscriber = registry.subscriber = Subscriber(registry, client)
        subscriber.start()
    if not await subscriber.ready():
        raise BackendUnavailable("revocation subscription unavailable")
    return registry


async def stop_subscriber() -> None:
    """Stop the running loop's subscriber, if any (before its Redis client is closed)."""
    registry = current_registry()
    if registry is not None and registry.subscriber is not None:
        subscriber, registry.subscriber = registry.subscriber, None
        await subscriber.stop()


register_close_hook(stop_subscriber)


async def publish(message: SessionMessage) -> None:
    """Send ``message`` to every process once (in-process without ``REDIS_URL``).

    Raises:
        BackendUnavailable: Redis did not take it; it was still applied on this process.
    """
    client = get_redis()
    if client is None:
        apply_everywhere(message)
        return
    try:
        async with command_deadline():
            await client.publish(channel_name(), message.encode())
    except (RedisError, OSError) as exc:
        apply_everywhere(message)
        raise BackendUnavailable("revocation: Redis unavailable") from exc


async def send_user_event(user_id: int | str, event: dict[str, Any]) -> None:
    """Deliver channel-layer-style ``event`` to every live connection of ``user_id``.

    Each connection dispatches it like a channel-layer event (its ``type`` names the
    handler, through the consumer's event allow-list), in its own loop.

    Raises:
        ValueError: ``event`` has no string ``type``.
        BackendUnavailable: Redis did not take it (this process still delivered it).
    """
    if not isinstance(event.get("type"), str):
        raise ValueError("an event needs a string type")
    await publish(SessionMessage("user_event", str(user_id), "", event))


def publish_sync(message: SessionMessage) -> None:
    """Synchronous :func:`publish`, for signal receivers, views and the admin.

    Raises:
        BackendUnavailable: Redis did not take it; it was still applied on this process.
    """
    client = get_sync_redis()
    if client is None:
        apply_everywhere(message)
        return
    try:
        client.publish(channel_name(), message.encode())
    except (RedisError, OSError) as exc:
        apply_everywhere(message)
        raise BackendUnavailable("revocation: Redis unavailable") from exc
