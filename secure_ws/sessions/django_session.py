"""A Django session as a WebSocket identity: its id, its expiry, and its logout.

A connection authenticated by the session cookie (``ALLOW_SESSION_AUTH``), or opened with a
ticket that a session asked for, belongs to that Django session the way a token connection
belongs to its login session (``sid``): it is registered under the session for revocation,
ends with 4403 ``revoked`` when the session logs out (``user_logged_out``) and with 4401
``session_expired`` when the session expires.

The session key is a bearer secret, so it is never stored, logged or published:
the identity is :func:`session_credential_id`, a hash of it under a prefix that no token
``sid`` has. Logout goes through :func:`secure_ws.sessions.revocation.revoke_session`, the same path
as a token logout, so the mark reaches every process and a pending ticket of that session
is refused at the handshake.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.signals import user_logged_out

from secure_ws.conf import get_settings
from secure_ws.sessions.revocation import revoke_session

logger = logging.getLogger(__name__)

#: Prefix of a Django-session identity (a token ``sid`` is 32 hex digits, never this).
DJANGO_SESSION_PREFIX = "djs-"


def session_credential_id(session_key: str) -> str:
    """Return the identity of the Django session ``session_key`` (never the key itself)."""
    digest = hashlib.sha256(b"secure_ws.django_session:" + session_key.encode()).hexdigest()
    return DJANGO_SESSION_PREFIX + digest[:40]


def session_expiry(session: Any) -> float:
    """Return when ``session`` (a ``SessionStore`` of a stored session) expires, as a timestamp.

    Database-backed engines know the stored ``expire_date`` (``get_model_class()`` is their
    documented extension point); others report what ``get_expiry_date()`` computes. Runs
    database queries: call it from sync code.
    """
    get_model_class = getattr(session, "get_model_class", None)
    if callable(get_model_class) and session.session_key:
        stored = (
            get_model_class()
            ._default_manager.filter(session_key=session.session_key)
            .values_list("expire_date", flat=True)
            .first()
        )
        if stored is not None:
            return float(stored.timestamp())
    return float(session.get_expiry_date().timestamp())


def revocation_ttl() -> int:
    """Seconds a logged-out session's mark must live: as long as its cookie or a ticket."""
    return max(int(django_settings.SESSION_COOKIE_AGE), get_settings().TICKET_TTL, 1)


def _revoke_on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out``: end the WebSockets and pending tickets of that Django session."""
    if request is None or not get_settings().REVOKE_ON_LOGOUT:
        return
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if not session_key:
        return
    revoke_session(
        session_credential_id(session_key), getattr(user, "pk", None), ttl=revocation_ttl()
    )


user_logged_out.connect(_revoke_on_logout, dispatch_uid="secure_ws.django_session_logout")
