"""Token helpers: a signed access token for a user, and the subprotocol that carries it."""

from __future__ import annotations

from typing import Any

from rest_framework_simplejwt.tokens import AccessToken

from secure_ws.codes import BEARER_SUBPROTOCOL_PREFIX

__all__ = ["access_token_for", "bearer_subprotocol"]


def access_token_for(user: Any, **claims: Any) -> str:
    """Return a signed access token for ``user`` (``SIMPLE_JWT`` settings), with ``claims`` added.

    Extra claims override the defaults, e.g. ``exp`` to test expiry or ``sid`` to test
    session revocation.
    """
    token = AccessToken.for_user(user)
    for name, value in claims.items():
        token[name] = value
    return str(token)


def bearer_subprotocol(token: str) -> str:
    """Return the ``bearer.<token>`` subprotocol a browser client offers to authenticate."""
    return BEARER_SUBPROTOCOL_PREFIX + token
