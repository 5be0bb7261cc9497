"""The ``secure-ws.v1`` envelope and the payload schemas the protocol itself defines.

Every schema is strict (no coercion), forbids extra keys and accepts finite numbers only
(:data:`STRICT_CONFIG`); a consumer's own payloads subclass :class:`Schema`.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

__all__ = [
    "MAX_CLIENT_ID_CHARS",
    "MAX_REFRESH_TOKEN_CHARS",
    "STRICT_CONFIG",
    "AckPayload",
    "AuthExpiringPayload",
    "AuthRefreshPayload",
    "ClientId",
    "ClientMessage",
    "EmptyPayload",
    "ErrorPayload",
    "FieldError",
    "PayloadT",
    "Schema",
]

#: Longest client ``id`` the server accepts and echoes.
MAX_CLIENT_ID_CHARS = 64
#: The model configuration every envelope and payload schema uses.
STRICT_CONFIG = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

ClientId = Annotated[str, StringConstraints(max_length=MAX_CLIENT_ID_CHARS)]


class Schema(BaseModel):
    """Base class for payload schemas: strict types, no extra keys, finite numbers only."""

    model_config = STRICT_CONFIG


class EmptyPayload(Schema):
    """A payload with no fields (``{}``, or omitted)."""


PayloadT = TypeVar("PayloadT", bound=BaseModel)


class ClientMessage(BaseModel, Generic[PayloadT]):
    """A validated client message: ``{"type", "id"?, "payload"}``."""

    model_config = STRICT_CONFIG

    type: str
    id: ClientId | None = None
    payload: PayloadT


class FieldError(Schema):
    """One field-level validation error: where, what and which kind, never the input."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorPayload(Schema):
    """Payload of an ``error`` frame."""

    code: str
    detail: str = ""
    errors: list[FieldError] | None = None


class AckPayload(Schema):
    """Payload of an ``ack`` frame (free-form, set by the handler)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


#: Longest access token ``auth.refresh`` accepts (the gate's ``MAX_CREDENTIAL_BYTES`` default).
MAX_REFRESH_TOKEN_CHARS = 4096


class AuthRefreshPayload(Schema):
    """Payload of ``auth.refresh``: a new access token (hidden from reprs and logs)."""

    token: Annotated[SecretStr, Field(min_length=1, max_length=MAX_REFRESH_TOKEN_CHARS)]


class AuthExpiringPayload(Schema):
    """Payload of ``auth.expiring``: seconds until the connection's token expires."""

    expires_in: float
