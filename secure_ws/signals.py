"""Signals for side effects the project owns.

A signal never decides whether a connection is allowed.

Every signal is sent with ``sender=None`` and an ``info`` keyword holding the
:class:`~secure_ws.connection.ConnectionInfo`.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent for every refused connection attempt, with ``info`` and ``reason``.
connection_refused = Signal()
#: Sent when a connection is accepted, with ``info``.
connection_accepted = Signal()
#: Sent when an accepted connection closes, with ``info`` and ``close_code``.
connection_closed = Signal()
#: Sent for every security event inside a connection, with ``info``, ``kind`` and ``detail``.
security_event = Signal()
