"""The ``secure-ws.v1`` envelope, payload schemas and the registry of client message types.

A consumer declares each client message type with :func:`message_handler` on a method named
``handle_<type>`` (dots become underscores)::

    class Chat(SecureJsonWebsocketConsumer):
        @message_handler("say", schema=SayPayload, permissions=[IsAuthenticated])
        async def handle_say(self, message: ClientMessage[SayPayload]) -> None: ...

:class:`MessageRegistry` collects those declarations per consumer class and decodes a text
frame into a validated :class:`ClientMessage` in one pydantic pass (strict, no extra keys,
finite numbers only), after two cheap guards that pydantic does not give us: nesting depth
and the ``NaN``/``Infinity`` literals that Python's JSON accepts and RFC 8259 does not.
Only declared types ever reach a handler, so a client cannot name an internal method.

The envelope and the protocol's own payload schemas live in
:mod:`secure_ws.consumer.schemas` (re-exported here, where consumers import them from).

Every failure becomes a :class:`~secure_ws.exceptions.MessageRejected` whose ``errors``
hold ``loc``/``msg``/``type`` only (:mod:`secure_ws.consumer.field_errors`): never the
client's input, which could be markup.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, cast

import pydantic_core
from pydantic import (
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)

from secure_ws.codes import ErrorCode
from secure_ws.consumer.field_errors import MAX_REPORTED_ERRORS, field_errors
from secure_ws.consumer.permissions import BasePermission
from secure_ws.consumer.schemas import (
    MAX_CLIENT_ID_CHARS,
    MAX_REFRESH_TOKEN_CHARS,
    STRICT_CONFIG,
    AckPayload,
    AuthExpiringPayload,
    AuthRefreshPayload,
    ClientId,
    ClientMessage,
    EmptyPayload,
    ErrorPayload,
    FieldError,
    Schema,
)
from secure_ws.exceptions import MessageRejected

__all__ = [
    "MAX_CLIENT_ID_CHARS",
    "MAX_REFRESH_TOKEN_CHARS",
    "MAX_REPORTED_ERRORS",
    "MAX_TYPE_CHARS",
    "STRICT_CONFIG",
    "AckPayload",
    "AuthExpiringPayload",
    "AuthRefreshPayload",
    "ClientId",
    "ClientMessage",
    "EmptyPayload",
    "ErrorPayload",
    "FieldError",
    "FrameRejected",
    "MessageRegistry",
    "MessageSpec",
    "Schema",
    "extract_client_id",
    "field_errors",
    "handler_name_for",
    "json_depth_exceeds",
    "message_handler",
]

#: Longest message ``type`` name.
MAX_TYPE_CHARS = 64

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class FrameRejected(MessageRejected):
    """A frame refused before any handler ran, with the client ``id`` to echo (if any)."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str = "",
        errors: list[dict[str, object]] | None = None,
        *,
        client_id: str | None = None,
    ) -> None:
        super().__init__(code, detail, errors)
        self.client_id = client_id


HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[None]])

_SPEC_ATTRIBUTE = "__secure_ws_message__"


@dataclass(frozen=True)
class MessageSpec:
    """What a consumer declared for one client message type."""

    type_name: str
    schema: type[BaseModel]
    #: ``None`` means "the consumer's ``default_permissions``".
    permissions: tuple[BasePermission, ...] | None
    handler_name: str
    description: str
    envelope: type[ClientMessage[Any]]


def handler_name_for(type_name: str) -> str:
    """Return the method name that handles client type ``type_name`` (``handle_<type>``)."""
    return "handle_" + type_name.replace(".", "_")


def _build_envelope(type_name: str, schema: type[BaseModel]) -> type[ClientMessage[Any]]:
    tag: Any = Literal.__getitem__(type_name)
    payload_required = any(field.is_required() for field in schema.model_fields.values())
    payload: Any = (schema, ...) if payload_required else (schema, Field(default_factory=schema))
    class_name = "".join(part.title() for part in re.split(r"[._]", type_name)) + "Message"
    base: Any = ClientMessage.__class_getitem__(schema)
    model: type[ClientMessage[Any]] = create_model(
        class_name,
        __base__=base,
        type=(tag, ...),
        payload=payload,
    )
    return model


def _as_permissions(
    permissions: Iterable[type[BasePermission] | BasePermission] | None,
) -> tuple[BasePermission, ...] | None:
    if permissions is None:
        return None
    return tuple(p() if isinstance(p, type) else p for p in permissions)


def message_handler(
    type_name: str,
    *,
    schema: type[BaseModel] = EmptyPayload,
    permissions: Iterable[type[BasePermission] | BasePermission] | None = None,
    description: str | None = None,
) -> Callable[[HandlerT], HandlerT]:
    """Declare the decorated coroutine as the handler of client message type ``type_name``.

    Args:
        type_name: The wire ``type``: lowercase words joined by ``.`` or ``_``.
        schema: The pydantic model the ``payload`` must match (use :class:`Schema` as the
            base so that it is strict and refuses extra keys).
        permissions: Permission classes or instances; every one must allow the message.
            ``None`` uses the consumer's ``default_permissions``.
        description: One line for the protocol document; defaults to the docstring.

    Raises:
        TypeError: When the method is not a coroutine named ``handle_<type>``, so that
            client types and channel-layer handlers can never share a name.
    """
    if len(type_name) > MAX_TYPE_CHARS or not _TYPE_NAME.match(type_name):
        raise TypeError(f"message type {type_name!r} must be lowercase words joined by . or _")
    expected_name = handler_name_for(type_name)

    def decorate(func: HandlerT) -> HandlerT:
        if func.__name__ != expected_name:
            raise TypeError(f"the handler of {type_name!r} must be named {expected_name!r}")
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"{expected_name} must be an async def")
        doc = inspect.getdoc(func) or ""
        spec = MessageSpec(
            type_name=type_name,
            schema=schema,
            permissions=_as_permissions(permissions),
            handler_name=expected_name,
            description=description or (doc.splitlines()[0] if doc else ""),
            envelope=_build_envelope(type_name, schema),
        )
        setattr(func, _SPEC_ATTRIBUTE, spec)
        return cast(HandlerT, func)

    return decorate


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """Return whether the JSON in ``text`` nests objects/arrays deeper than ``max_depth``.

    Brackets inside strings do not count. Callers first compare the number of ``{`` and
    ``[`` with ``max_depth`` (a C-speed count), so this scan runs only for frames that
    could be too deep.
    """
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "}]":
            depth -= 1
    return False


def extract_client_id(text: str) -> str | None:
    """Best-effort ``id`` of a frame that failed validation, so the error can echo it.

    Only called on the error path, after the depth guard. Returns ``None`` unless the frame
    is a JSON object whose ``id`` is a string of at most :data:`MAX_CLIENT_ID_CHARS`.
    """
    try:
        data = pydantic_core.from_json(text, allow_inf_nan=False)
    except (TypeError, ValueError):
        return None
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str) and len(value) <= MAX_CLIENT_ID_CHARS:
            return value
    return None


class MessageRegistry:
    """The client message types one consumer class declared, and their decoder."""

    def __init__(self, specs: Mapping[str, MessageSpec]) -> None:
        self.specs: dict[str, MessageSpec] = dict(specs)
        self._adapter: TypeAdapter[Any] | None = None

    @classmethod
    def collect(cls, klass: type) -> MessageRegistry:
        """Collect the :func:`message_handler` declarations of ``klass`` and its bases.

        Raises:
            TypeError: When two types map to the same handler name.
        """
        specs: dict[str, MessageSpec] = {}
        for base in reversed(klass.__mro__):
            for attr in vars(base).values():
                spec = getattr(attr, _SPEC_ATTRIBUTE, None)
                if isinstance(spec, MessageSpec):
                    specs[spec.type_name] = spec
        names: dict[str, str] = {}
        for spec in specs.values():
            other = names.setdefault(spec.handler_name, spec.type_name)
            if other != spec.type_name:
                raise TypeError(f"types {other!r} and {spec.type_name!r} share {spec.handler_name}")
        return cls(specs)

    @property
    def adapter(self) -> TypeAdapter[Any]:
        """One pydantic validator for every declared envelope, keyed on ``type``."""
        if self._adapter is None:
            envelopes = tuple(spec.envelope for spec in self.specs.values())
            if len(envelopes) == 1:
                self._adapter = TypeAdapter(envelopes[0])
            else:
                union: Any = Union[envelopes]  # noqa: UP007 - a runtime-built union
                self._adapter = TypeAdapter(Annotated[union, Field(discriminator="type")])
        return self._adapter

    def decode(self, text: str, *, max_depth: int) -> ClientMessage[Any]:
        """Parse and validate one text frame.

        Raises:
            MessageRejected: ``invalid_json`` (not JSON, or ``NaN``/``Infinity``),
                ``invalid_message`` (too deep, not an object, schema failure, with field
                errors) or ``unknown_type`` (a type this consumer does not declare).
        """
        if text.count("{") + text.count("[") > max_depth and json_depth_exceeds(text, max_depth):
            raise FrameRejected(ErrorCode.INVALID_MESSAGE, "JSON nested too deeply")
        if ("NaN" in text or "Infinity" in text) and not _is_strict_json(text):
            raise FrameRejected(ErrorCode.INVALID_JSON, "Invalid JSON")
        if not self.specs:
            raise FrameRejected(
                ErrorCode.UNKNOWN_TYPE, "Unknown message type", client_id=extract_client_id(text)
            )
        try:
            message: ClientMessage[Any] = self.adapter.validate_json(text)
        except ValidationError as exc:
            raise self._rejection(exc, text) from None
        except (TypeError, ValueError):
            # A str that is not valid Unicode (lone surrogates) never came from a real
            # UTF-8 frame; refuse it like any other non-JSON text.
            raise FrameRejected(ErrorCode.INVALID_JSON, "Invalid JSON") from None
        return message

    def _rejection(self, exc: ValidationError, text: str) -> FrameRejected:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        kind, loc = first["type"], first["loc"]
        if kind == "json_invalid" or (kind == "string_unicode" and not loc):
            return FrameRejected(ErrorCode.INVALID_JSON, "Invalid JSON")
        client_id = extract_client_id(text)
        if not loc and kind == "union_tag_invalid":
            return FrameRejected(
                ErrorCode.UNKNOWN_TYPE, "Unknown message type", client_id=client_id
            )
        if not loc and kind == "union_tag_not_found":
            errors: list[dict[str, object]] = [
                {"loc": ["type"], "msg": "Field required", "type": "missing"}
            ]
            return FrameRejected(
                ErrorCode.INVALID_MESSAGE, "Invalid message", errors, client_id=client_id
            )
        if not loc and kind in {"dict_type", "model_type", "model_attributes_type"}:
            return FrameRejected(
                ErrorCode.INVALID_MESSAGE, "A message must be a JSON object", client_id=client_id
            )
        return FrameRejected(
            ErrorCode.INVALID_MESSAGE,
            "Invalid message",
            field_errors(exc, drop_tag=len(self.specs) > 1),
            client_id=client_id,
        )


def _is_strict_json(text: str) -> bool:
    try:
        pydantic_core.from_json(text, allow_inf_nan=False)
    except (TypeError, ValueError):
        return False
    return True
