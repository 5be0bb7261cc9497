"""Message-level checks: frame limits, binary frames, hostile JSON, unknown types, reflection.

On an endpoint that selected ``secure-ws.v1`` each hostile message must be answered by an
``error`` frame (or a policy close); silence is a failure because the protocol promises an
answer. In generic JSON mode silence is only a warning: the probe cannot know the
protocol, but an echo of unvalidated input or a server error is still a failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from websockets.exceptions import ConnectionClosed

from secure_ws.probe.checks_common import A04, A05, Result, baseline_needed
from secure_ws.probe.model import Verdict
from secure_ws.probe.registry import OWASP_WS, check
from secure_ws.probe.session import (
    MARKER,
    ProbeSession,
    close_code_of,
    error_code,
    receive,
)

INPUT = "OWASP A03:2021 Injection / input validation; " + OWASP_WS + "#input-validation"

#: Close codes that mean "refused this input on purpose".
POLICY_CLOSES = frozenset({1003, 1007, 1008, 1009, 4003, 4008, 4009, 4429})
#: Close codes that mean the server broke (1006, a drop without a close frame, is a WARN).
CRASH_CLOSES = frozenset({1011, 4011})

REPLY_WAIT = 2.0


def ping(session: ProbeSession, client_id: str | None = None, **payload: object) -> str:
    """A ``ping`` in the endpoint's dialect; well-formed when ``payload`` is empty."""
    message: dict[str, object] = {"type": "ping"}
    if client_id is not None:
        message["id"] = client_id
    if session.mode == "v1":
        message["payload"] = payload
    else:
        message.update(payload)
    return json.dumps(message)


async def send_hostile(
    session: ProbeSession, data: str | bytes | Sequence[str], what: str
) -> Result:
    """Send one hostile message on a fresh authenticated connection and judge the answer."""
    skip = await baseline_needed(session)
    if skip:
        return skip
    sent = data if isinstance(data, (str, bytes)) else "".join(data)
    async with session.connection() as conn:
        try:
            await session.send(conn, data)
            reply = await receive(conn, REPLY_WAIT)
        except ConnectionClosed as closed:
            return judge_close(close_code_of(closed), what)
        if reply is None:
            if session.mode == "v1":
                return Verdict.FAIL, f"{what}: no error frame within {REPLY_WAIT:g}s"
            return Verdict.WARN, f"{what}: no reply within {REPLY_WAIT:g}s (generic mode)"
        return judge_reply(reply, sent, what)


def judge_close(code: int, what: str) -> Result:
    """PASS for a policy close, FAIL for a crash, WARN for anything else."""
    if code in POLICY_CLOSES:
        return Verdict.PASS, f"{what}: closed {code}"
    if code in CRASH_CLOSES:
        return Verdict.FAIL, f"{what}: server closed {code} (crash, not a refusal)"
    return Verdict.WARN, f"{what}: closed {code}"


def judge_reply(reply: str | bytes, sent: str | bytes, what: str) -> Result:
    """PASS for an error frame that reflects nothing; FAIL for an echo or a normal answer."""
    text = reply if isinstance(reply, str) else reply.decode("utf-8", "replace")
    sent_text = sent if isinstance(sent, str) else sent.decode("utf-8", "replace")
    if len(sent_text) >= 16 and sent_text[:4096] in text:
        return Verdict.FAIL, f"{what}: input echoed back unvalidated ({len(text)} bytes)"
    if MARKER in text:
        return Verdict.FAIL, f"{what}: reply reflects the input"
    code = error_code(reply)
    if code is not None:
        return Verdict.PASS, f"{what}: error {code}"
    return Verdict.FAIL, f"{what}: answered as if valid: {text[:80]}"


@check(
    "frames.oversized_message",
    "frames",
    "An oversized text message is refused",
    "Without a size limit one message can exhaust server memory.",
    A04,
)
async def frames_oversized(session: ProbeSession) -> Result:
    size = session.config.oversize_bytes
    data = ping(session, pad="x" * size)
    return await send_hostile(session, data, f"{len(data)} byte message")


@check(
    "frames.fragmented_oversize",
    "frames",
    "An oversized message sent in many fragments is refused",
    "Limits checked per frame, not per message, are bypassed by fragmentation.",
    A04,
)
async def frames_fragmented(session: ProbeSession) -> Result:
    data = ping(session, pad="y" * session.config.oversize_bytes)
    chunk = max(1, len(data) // 64)
    fragments = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return await send_hostile(
        session, fragments, f"{len(data)} bytes in {len(fragments)} fragments"
    )


@check(
    "frames.binary",
    "frames",
    "Binary frames are refused where text JSON is expected",
    "Binary frames bypass text validation and reach parsers nobody reviewed.",
    INPUT,
)
async def frames_binary(session: ProbeSession) -> Result:
    return await send_hostile(session, b"\x00\x01\xffprobe-binary-frame", "binary frame")


@check(
    "messages.malformed_json",
    "messages",
    "Malformed JSON gets a clean error",
    "Parser errors must be answered, not crash the handler or be ignored.",
    INPUT,
)
async def messages_malformed(session: ProbeSession) -> Result:
    return await send_hostile(session, '{"type": "ping", "payload": {', "malformed JSON")


@check(
    "messages.non_object",
    "messages",
    "A JSON value that is not an object gets a clean error",
    "Handlers that assume a dict crash on a list, a string or null.",
    INPUT,
)
async def messages_non_object(session: ProbeSession) -> Result:
    return await send_hostile(session, '[["probe", "not", "an", "object"]]', "JSON array")


@check(
    "messages.deep_nesting",
    "messages",
    "Deeply nested JSON is refused",
    "Deep nesting exhausts the recursion limit or the validator: a one-message DoS.",
    A04,
)
async def messages_deep_nesting(session: ProbeSession) -> Result:
    depth = 5000
    nested = "[" * depth + "]" * depth
    data = '{"type": "ping", "payload": {"n": ' + nested + "}}"
    return await send_hostile(session, data, f"nesting depth {depth}")


@check(
    "messages.huge_number",
    "messages",
    "A 20000-digit number is refused",
    "Huge integers cost quadratic time to parse and overflow downstream types.",
    A04,
)
async def messages_huge_number(session: ProbeSession) -> Result:
    data = '{"type": "ping", "payload": {"n": ' + "9" * 20000 + "}}"
    return await send_hostile(session, data, "20000-digit number")


@check(
    "messages.nan",
    "messages",
    "NaN and Infinity are refused",
    "NaN is not JSON; accepting it breaks comparisons, limits and other parsers.",
    INPUT,
)
async def messages_nan(session: ProbeSession) -> Result:
    return await send_hostile(
        session, '{"type": "ping", "payload": {"n": NaN, "m": Infinity}}', "NaN"
    )


@check(
    "messages.unknown_type",
    "messages",
    "An unknown message type is refused",
    "Only declared message types may reach a handler (allow-list, not deny-list).",
    INPUT,
)
async def messages_unknown_type(session: ProbeSession) -> Result:
    data = json.dumps({"type": "probe.undeclared_type", "payload": {}})
    return await send_hostile(session, data, "unknown type")


@check(
    "messages.internal_type",
    "messages",
    "A client message named like a server internal is refused",
    'A client "websocket.disconnect" must not reach the framework\'s own handlers.',
    INPUT,
)
async def messages_internal_type(session: ProbeSession) -> Result:
    data = json.dumps({"type": "websocket.disconnect", "code": 1000, "payload": {}})
    result = await send_hostile(session, data, "type websocket.disconnect")
    if result[0] is Verdict.WARN and "closed 1000" in result[1]:
        return Verdict.FAIL, result[1] + " (reached the disconnect handler)"
    return result


@check(
    "messages.error_reflection",
    "messages",
    "Error replies do not reflect the input",
    "Reflected input in errors is an XSS vector in dashboards and a log-injection path.",
    INPUT,
)
async def messages_error_reflection(session: ProbeSession) -> Result:
    skip = await baseline_needed(session)
    if skip:
        return skip
    bait = f"<script>{MARKER}</script>"
    probes = [
        {"type": bait, "payload": {}},
        {"type": "ping", "payload": {"name": bait}},
        {"type": "subscribe", "payload": {"folder": bait}},
        {"type": "file_upload", "payload": {"folder": bait, "name": bait, "size": bait}},
    ]
    errors: list[str] = []
    async with session.connection() as conn:
        for index, probe in enumerate(probes, 1):
            try:
                await session.send(conn, json.dumps(probe))
                reply = await receive(conn, REPLY_WAIT)
            except ConnectionClosed as closed:
                return judge_close(close_code_of(closed), f"{len(errors)} errors, then")
            if reply is None:
                continue
            text = reply if isinstance(reply, str) else reply.decode("utf-8", "replace")
            if MARKER in text:
                return Verdict.FAIL, f"reply to hostile message {index} reflects the input"
            errors.append(error_code(reply) or "non-error reply")
    if not errors:
        return Verdict.WARN, "no replies to hostile input (cannot tell)"
    return Verdict.PASS, f"{len(errors)} replies, none reflecting input: {', '.join(errors)}"


@check(
    "messages.wrong_types",
    "messages",
    "A message with wrongly typed fields is refused",
    "Schema validation must check types, not only the presence of keys.",
    INPUT,
)
async def messages_wrong_types(session: ProbeSession) -> Result:
    data = json.dumps({"type": ["ping"], "id": {"x": 1}, "payload": "not-an-object"})
    return await send_hostile(session, data, "wrongly typed envelope")


@check(
    "handshake.compression",
    "handshake",
    "permessage-deflate is not negotiated",
    "Compression of secrets next to attacker input leaks them (CRIME-style) and enables zip bombs.",
    A05,
)
async def handshake_compression(session: ProbeSession) -> Result:
    outcome = await session.attempt(compression="deflate", settle=0.1)
    if not outcome.accepted:
        outcome = await session.attempt(compression="deflate", credentials=False, settle=0.1)
    extensions = [v for k, v in outcome.headers if k.lower() == "sec-websocket-extensions"]
    if extensions:
        return Verdict.WARN, f"negotiated {extensions[0]}"
    if not outcome.accepted:
        return Verdict.SKIP, f"could not open a connection ({outcome.describe()})"
    return Verdict.PASS, "permessage-deflate offered and declined"
