"""The per-process connection registry: who is connected here, by user, session and id.

Revocation used to make every connection join two channel-layer groups (its user's and its
login session's) before it was accepted and leave them at close: four or more Redis
commands per connection, for an event that almost never happens. Instead, each process
keeps its open connections in memory, indexed three ways, and one subscription per process
(:mod:`secure_ws.sessions.pubsub`) hears every revocation; the process closes its own
matches. Registering and unregistering are a few dict operations, with no Redis, no task
and no channel-layer call.

A :class:`SessionMessage` is what travels: a kind (``user``, ``session``, ``connection``,
or ``user_event``), an id, a reason, and for ``user_event`` a channel-layer-style event
that the user's local connections dispatch through their usual event allow-list.

The registry belongs to the running event loop (daphne and uvicorn run one loop per
process, so one registry per process); test runners that make a loop per test get a fresh
one each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from secure_ws.codes import CloseCode, Reason
from secure_ws.connection import ConnectionInfo

logger = logging.getLogger(__name__)

Kind = Literal["user", "session", "connection", "user_event"]

#: The kinds a :class:`SessionMessage` may have.
KINDS: frozenset[str] = frozenset({"user", "session", "connection", "user_event"})

#: Largest encoded message a process acts on; revocations are a few dozen bytes.
MAX_MESSAGE_BYTES = 8192
#: Longest id (user id, session id, connection id) a message may name.
MAX_ID_CHARS = 128
#: Longest reason word carried (it is logged, never sent to a client).
MAX_REASON_CHARS = 64


class LocalConnection(Protocol):
    """What the registry needs of a connection (``SecureJsonWebsocketConsumer`` has it)."""

    connection: ConnectionInfo

    async def end_connection(self, code: CloseCode, reason: Reason) -> None:
        """Close the connection with ``code`` and ``reason`` (before accept: right after)."""

    def deliver_event(self, event: dict[str, Any]) -> None:
        """Queue a channel-layer-style event for the connection's own event dispatch."""


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """One revocation (or per-user event) as it travels between processes."""

    kind: Kind
    id: str
    reason: str = Reason.REVOKED.value
    event: dict[str, Any] | None = field(default=None)

    def encode(self) -> str:
        """Return the compact JSON form published on the channel."""
        body: dict[str, Any] = {"kind": self.kind, "id": self.id, "reason": self.reason}
        if self.event is not None:
            body["event"] = self.event
        return json.dumps(body, separators=(",", ":"), allow_nan=False)

    @classmethod
    def decode(cls, data: bytes | str) -> SessionMessage | None:
        """Parse a published message; return ``None`` for anything malformed (dropped)."""
        if len(data) > MAX_MESSAGE_BYTES:
            return None
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        kind, ident, reason = body.get("kind"), body.get("id"), body.get("reason", "")
        if kind not in KINDS or not isinstance(ident, str) or not isinstance(reason, str):
            return None
        if not ident or len(ident) > MAX_ID_CHARS or len(reason) > MAX_REASON_CHARS:
            return None
        event = body.get("event")
        if kind == "user_event":
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                return None
        else:
            event = None
        return cls(kind=kind, id=ident, reason=reason, event=event)


def _key(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


class ConnectionRegistry:
    """The open connections of one process (one event loop), by connection, user, session.

    ``add``, ``remove`` and ``move_session`` are O(1) dict operations. :meth:`apply` runs
    a :class:`SessionMessage` against the local connections: closes start a task each (a
    revocation is rare; a task keeps one slow close from holding up the others), events are
    queued on each connection's own dispatch, so they never run beside a client message.
    """

    __slots__ = (
        "__weakref__",
        "_by_connection",
        "_by_session",
        "_by_user",
        "_tasks",
        "loop",
        "subscriber",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # connection id -> (connection, user key, session key) as registered.
        self._by_connection: dict[str, tuple[LocalConnection, str | None, str | None]] = {}
        self._by_user: dict[str, dict[str, LocalConnection]] = {}
        self._by_session: dict[str, dict[str, LocalConnection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The pub/sub subscriber feeding this registry (:mod:`secure_ws.sessions.pubsub`).
        self.subscriber: Any = None

    def __len__(self) -> int:
        return len(self._by_connection)

    def __contains__(self, conn: object) -> bool:
        info = getattr(conn, "connection", None)
        entry = self._by_connection.get(info.connection_id) if info is not None else None
        return entry is not None and entry[0] is conn

    def add(self, conn: LocalConnection) -> None:
        """Register ``conn`` under its connection id, user id and session id."""
        info = conn.connection
        cid = info.connection_id
        self.remove(conn)
        user, session = _key(info.user_id), _key(info.session_id)
        self._by_connection[cid] = (conn, user, session)
        if user is not None:
            self._by_user.setdefault(user, {})[cid] = conn
        if session is not None:
            self._by_session.setdefault(session, {})[cid] = conn

    def remove(self, conn: LocalConnection) -> None:
        """Forget ``conn`` (a no-op if it is not registered); empty index entries go too."""
        cid = conn.connection.connection_id
        entry = self._by_connection.get(cid)
        if entry is None or entry[0] is not conn:
            return
        del self._by_connection[cid]
        _discard(self._by_user, entry[1], cid)
        _discard(self._by_session, entry[2], cid)

    def move_session(self, conn: LocalConnection, session_id: str | None) -> None:
        """File ``conn`` under a new login session (``auth.refresh`` with another ``sid``)."""
        cid = conn.connection.connection_id
        entry = self._by_connection.get(cid)
        if entry is None or entry[0] is not conn:
            return
        new = _key(session_id)
        _discard(self._by_session, entry[2], cid)
        self._by_connection[cid] = (conn, entry[1], new)
        if new is not None:
            self._by_session.setdefault(new, {})[cid] = conn

    def matches(self, kind: str, ident: str) -> list[LocalConnection]:
        """Return the local connections a message of ``kind`` about ``ident`` names."""
        if kind == "connection":
            entry = self._by_connection.get(ident)
            return [entry[0]] if entry is not None else []
        index = self._by_session if kind == "session" else self._by_user
        return list(index.get(ident, {}).values())

    def __iter__(self) -> Iterator[LocalConnection]:
        return iter([entry[0] for entry in self._by_connection.values()])

    def apply(self, message: SessionMessage) -> int:
        """Act on ``message`` here: close (4403 ``revoked``) or deliver; return how many."""
        targets = self.matches(message.kind, message.id)
        if message.kind == "user_event":
            assert message.event is not None  # decode() and send_user_event() ensure it
            for conn in targets:
                conn.deliver_event(dict(message.event))
            return len(targets)
        for conn in targets:
            logger.info(
                "revoking connection_id=%s (%s %s)",
                conn.connection.connection_id,
                message.kind,
                message.reason[:MAX_REASON_CHARS],
            )
            self._spawn(conn.end_connection(CloseCode.FORBIDDEN, Reason.REVOKED))
        return len(targets)

    def close_all(self, code: CloseCode, reason: Reason) -> int:
        """Close every registered connection (the subscription was lost); return how many."""
        targets = list(self)
        for conn in targets:
            self._spawn(conn.end_connection(code, reason))
        return len(targets)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("closing a revoked connection failed", exc_info=task.exception())


def _discard(index: dict[str, dict[str, LocalConnection]], key: str | None, cid: str) -> None:
    if key is None:
        return
    members = index.get(key)
    if members is not None:
        members.pop(cid, None)
        if not members:
            del index[key]


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionRegistry] = (
    weakref.WeakKeyDictionary()
)


def get_registry() -> ConnectionRegistry:
    """Return the running loop's registry (one per process under daphne or uvicorn).

    Raises:
        RuntimeError: when called outside a running event loop.
    """
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = ConnectionRegistry(loop)
    return registry


def current_registry() -> ConnectionRegistry | None:
    """Return the running loop's registry if it has one, else ``None`` (never creates)."""
    try:
        return _registries.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def apply_everywhere(message: SessionMessage) -> None:
    """Apply ``message`` to every registry of this process, from any thread.

    This is the whole delivery without ``REDIS_URL`` (one process), and a best effort on
    this process when a publish fails.
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, registry in list(_registries.items()):
        if loop is running:
            registry.apply(message)
        elif not loop.is_closed():
            # A loop that closed meanwhile raises RuntimeError: its connections are gone.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(registry.apply, message)
