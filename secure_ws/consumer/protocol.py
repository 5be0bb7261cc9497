"""The protocol as data: an AsyncAPI 3.0 document built from the registered consumers.

The message registry of each :class:`~secure_ws.consumer.secure.SecureJsonWebsocketConsumer`
and the enums of :mod:`secure_ws.codes` are the single source; ``manage.py ws_schema``
prints the document, and ``docs/protocol.md`` is rendered from it (a test fails when the
committed file drifts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from secure_ws import __version__
from secure_ws.codes import APP_SUBPROTOCOL, CloseCode, ErrorCode, private_close_code
from secure_ws.consumer.messages import MAX_CLIENT_ID_CHARS
from secure_ws.consumer.secure import SecureJsonWebsocketConsumer

#: What each close code means and what a client should do (DESIGN.md, "Close codes").
CLOSE_CODE_MEANINGS: dict[CloseCode, tuple[str, str]] = {
    CloseCode.NORMAL: ("normal close", "-"),
    CloseCode.GOING_AWAY: ("server going away", "reconnect"),
    CloseCode.UNSUPPORTED_DATA: ("binary frame where text is required", "fix client"),
    CloseCode.POLICY_VIOLATION: (
        "policy violation: too many invalid messages",
        "not retry blindly",
    ),
    CloseCode.MESSAGE_TOO_BIG: ("message too big", "fix client"),
    CloseCode.INTERNAL_ERROR: ("unexpected server error", "reconnect with backoff"),
    CloseCode.TRY_AGAIN_LATER: ("try again later (overload, Redis down)", "reconnect with backoff"),
    CloseCode.UNAUTHORIZED: (
        "credentials missing, invalid or expired (close mode, or mid-connection: token or "
        "session expiry, MAX_CONNECTION_AGE)",
        "refresh token, reconnect",
    ),
    CloseCode.FORBIDDEN: (
        "forbidden or revoked (user disabled, password changed, logged out, session killed "
        "by an operator)",
        "do not reconnect",
    ),
    CloseCode.IDLE_TIMEOUT: ("idle timeout", "reconnect when needed"),
    CloseCode.RATE_LIMITED: ("rate or connection limit exceeded", "back off"),
}

#: What each ``error`` code means.
ERROR_CODE_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "the frame is not JSON (or uses NaN/Infinity)",
    ErrorCode.INVALID_MESSAGE: "the envelope or payload failed validation; see `errors`",
    ErrorCode.UNKNOWN_TYPE: "the consumer declares no such client type",
    ErrorCode.FORBIDDEN: "a permission of the type refused the message",
    ErrorCode.RATE_LIMITED: "the connection's message or byte rate was exceeded",
    ErrorCode.TOO_LARGE: "the frame exceeds MAX_MESSAGE_BYTES",
    ErrorCode.SERVER_ERROR: "the handler failed; nothing about it is disclosed",
}


@dataclass(frozen=True)
class Endpoint:
    """One WebSocket route served by a secure_ws consumer."""

    path: str
    consumer: type[SecureJsonWebsocketConsumer]


def endpoints_from_urlpatterns(patterns: Iterable[Any], prefix: str = "") -> list[Endpoint]:
    """Return the secure_ws consumers of a (possibly nested) list of URL patterns."""
    found: list[Endpoint] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        nested = getattr(pattern, "url_patterns", None)
        if nested is not None:
            found.extend(endpoints_from_urlpatterns(nested, route))
            continue
        consumer = getattr(pattern.callback, "consumer_class", None)
        if isinstance(consumer, type) and issubclass(consumer, SecureJsonWebsocketConsumer):
            found.append(Endpoint("/" + route.lstrip("^").rstrip("$").lstrip("/"), consumer))
    return found


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-") or "root"


def _envelope_schema(type_name: str, payload_ref: str, payload_required: bool) -> dict[str, Any]:
    required = ["type", "payload"] if payload_required else ["type"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "type": {"const": type_name},
            "id": {"type": "string", "maxLength": MAX_CLIENT_ID_CHARS},
            "payload": {"$ref": payload_ref},
        },
    }


def build_asyncapi(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of ``endpoints`` as plain JSON-able data."""
    models: dict[str, type[BaseModel]] = {}
    for endpoint in endpoints:
        for spec in endpoint.consumer.message_registry.specs.values():
            models[spec.schema.__name__] = spec.schema
        for schema in endpoint.consumer.server_messages.values():
            models[schema.__name__] = schema
    ordered = [models[name] for name in sorted(models)]
    ref_template = "#/components/schemas/{model}"
    refs, definitions = models_json_schema(
        [(model, "validation") for model in ordered], ref_template=ref_template
    )
    schemas = dict(sorted(definitions.get("$defs", {}).items()))

    def ref_of(model: type[BaseModel]) -> str:
        return str(refs[(model, "validation")]["$ref"])

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for endpoint in endpoints:
        channel_id = _slug(endpoint.path)
        client_refs, server_refs = [], []
        for name, spec in sorted(endpoint.consumer.message_registry.specs.items()):
            message_id = f"client.{name}"
            permissions = endpoint.consumer.permissions_by_type[name]
            messages[message_id] = {
                "name": name,
                "title": name,
                "summary": spec.description,
                "payload": _envelope_schema(
                    name,
                    ref_of(spec.schema),
                    any(f.is_required() for f in spec.schema.model_fields.values()),
                ),
                "x-permissions": [type(p).__name__ for p in permissions],
            }
            client_refs.append({"$ref": f"#/components/messages/{message_id}"})
        for name, schema in sorted(endpoint.consumer.server_messages.items()):
            message_id = f"server.{name}"
            messages[message_id] = {
                "name": name,
                "title": name,
                "summary": (schema.__doc__ or "").strip().splitlines()[0],
                "payload": _envelope_schema(name, ref_of(schema), True),
            }
            server_refs.append({"$ref": f"#/components/messages/{message_id}"})
        channels[channel_id] = {
            "address": endpoint.path,
            "title": endpoint.consumer.__name__,
            "description": (endpoint.consumer.__doc__ or "").strip().splitlines()[0],
            "messages": {
                ref["$ref"].rsplit("/", 1)[1]: ref for ref in [*client_refs, *server_refs]
            },
            "bindings": {"ws": {"bindingVersion": "0.1.0"}},
        }
        operations[f"{channel_id}.receive"] = _operation(
            "receive",
            channel_id,
            "Client messages the server accepts (anything else: unknown_type).",
            client_refs,
        )
        operations[f"{channel_id}.send"] = _operation(
            "send", channel_id, "Messages the server sends.", server_refs
        )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "secure-ws",
            "version": __version__,
            "description": (
                f"WebSocket protocol {APP_SUBPROTOCOL}: the client offers the subprotocol "
                f"{APP_SUBPROTOCOL!r}; frames are UTF-8 JSON text objects "
                '{"type", "id"?, "payload"}.'
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
        "x-error-codes": [
            {"code": code.value, "meaning": ERROR_CODE_MEANINGS.get(code, "")} for code in ErrorCode
        ],
        "x-close-codes": [
            {
                "code": int(code),
                "name": code.name.lower(),
                "meaning": CLOSE_CODE_MEANINGS[code][0],
                "client_should": CLOSE_CODE_MEANINGS[code][1],
                "daphne_code": private_close_code(int(code)),
            }
            for code in CloseCode
        ],
    }


def _operation(
    action: str, channel_id: str, summary: str, refs: list[dict[str, str]]
) -> dict[str, Any]:
    """An AsyncAPI operation of ``channel_id`` over the messages ``refs`` point to."""
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": summary,
        "messages": [
            {"$ref": f"#/channels/{channel_id}/messages/{ref['$ref'].rsplit('/', 1)[1]}"}
            for ref in refs
        ],
    }


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[1]
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    kind = str(prop.get("type", "any"))
    return f"{kind} ({prop['format']})" if "format" in prop else kind


def _constraints(prop: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", ">="),
        ("maximum", "<="),
        ("pattern", "pattern"),
    ):
        if key in prop:
            value = f"`{prop[key]}`" if key == "pattern" else prop[key]
            parts.append(f"{label} {value}")
    if prop.get("description"):
        parts.append(str(prop["description"]).replace("|", "\\|"))
    return "; ".join(parts)


def _schema_table(schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    if not properties:
        extra = "any keys" if schema.get("additionalProperties", True) else "no keys"
        return [f"Payload: `{{}}` ({extra}).", ""]
    required = set(schema.get("required", []))
    lines = ["| field | type | required | rules |", "| --- | --- | --- | --- |"]
    for name, prop in properties.items():
        lines.append(
            f"| `{name}` | {_type_of(prop)} | {'yes' if name in required else 'no'} "
            f"| {_constraints(prop)} |"
        )
    return [*lines, ""]


def render_markdown(document: dict[str, Any]) -> str:
    """Render ``docs/protocol.md`` from an AsyncAPI document built by :func:`build_asyncapi`."""
    schemas = document["components"]["schemas"]
    messages = document["components"]["messages"]
    out = [
        "# Wire protocol `secure-ws.v1`",
        "",
        "<!-- Generated by `python manage.py ws_schema --markdown > docs/protocol.md`. -->",
        "<!-- Do not edit: tests/test_protocol.py fails when this file drifts. -->",
        "",
        document["info"]["description"],
        "",
        "Client frames are validated strictly: unknown keys are refused, numbers must be",
        "finite, the client `id` is a string of at most "
        f"{MAX_CLIENT_ID_CHARS} characters and is echoed in every reply.",
        "The machine-readable AsyncAPI 3.0 document: `python manage.py ws_schema`.",
        "",
    ]
    for channel in document["channels"].values():
        out += [f"## `{channel['address']}` ({channel['title']})", "", channel["description"], ""]
        ids = list(channel["messages"])
        for side, prefix in (("Client messages", "client."), ("Server messages", "server.")):
            out += [f"### {side}", ""]
            for message_id in ids:
                if not message_id.startswith(prefix):
                    continue
                message = messages[message_id]
                out += [f"#### `{message['name']}`", "", message["summary"], ""]
                if "x-permissions" in message:
                    out += [f"Permissions: {', '.join(message['x-permissions'])}.", ""]
                payload_ref = message["payload"]["properties"]["payload"]["$ref"]
                out += _schema_table(schemas[payload_ref.rsplit("/", 1)[1]])
    out += ["## Error codes", "", "| code | meaning |", "| --- | --- |"]
    out += [f"| `{e['code']}` | {e['meaning']} |" for e in document["x-error-codes"]]
    out += [
        "",
        "## Close codes",
        "",
        "The server always sends an `error` frame with the reason before it closes (daphne",
        "drops close reasons). daphne (autobahn) can only send 1000 and 3000-4999, so on",
        "daphne 1003, 1008, 1009, 1011 and 1013 arrive as 4003, 4008, 4009, 4011 and 4013",
        "(`4000 + code % 1000`, last column); clients treat each like its 1xxx counterpart.",
        'A refusal in `REFUSAL_MODE = "close"` always uses the stand-in, on any server.',
        "Only a message over daphne's own `--websocket-max-message-size` still gets 1009:",
        "daphne closes it at the protocol level, before the application sees it.",
        "",
        "| code | meaning | client should | on daphne |",
        "| --- | --- | --- | --- |",
    ]
    out += [
        f"| {c['code']} | {c['meaning']} | {c['client_should']} | {c['daphne_code']} |"
        for c in document["x-close-codes"]
    ]
    out += ["", "## Shared schemas", ""]
    for name, schema in schemas.items():
        out += [f"### `{name}`", "", (schema.get("description") or "").strip(), ""]
        out += _schema_table(schema)
    return "\n".join(line.rstrip() for line in out).rstrip() + "\n"


def dumps(document: dict[str, Any]) -> str:
    """Serialise the document as stable, indented JSON."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
