"""Anthropic Messages API: ``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens``.

Wire shapes follow the ``anthropic`` SDK types (``Message``, ``Usage``, ``MessageDeltaUsage``, the
stream events) and real recorded answers; the caching rules live in ``_anthropic_cache``. Usage, as the
docs' "Verifying cache hits" section defines it: ``input_tokens`` is only the uncached remainder, and
``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` is the whole prompt. A stream
carries the usage in ``message_start`` and again, cumulatively, in ``message_delta`` (LangChain's
ChatAnthropic reads only the latter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._anthropic_cache import (
    CacheOutcome,
    InvalidCacheControl,
    block_text,
    content_blocks,
    flatten,
    plan_breakpoints,
)
from ._anthropic_diagnostics import InvalidDiagnostics, requested_diagnostics
from ._context import RequestContext, key_fingerprint
from ._http import EmulatorResponse, dumps, json_response
from ._synth import ArgumentSynthesizer, digest, encode, parallel_items, pick_tool, reply_text, tool_result_text

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["anthropic_error", "handle_count_tokens", "handle_messages", "handle_not_found"]

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"
_BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ROLES = ("user", "assistant")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


class _Reject(Exception):
    def __init__(self, response: EmulatorResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _request_id(seed: int, seq: int) -> str:
    return "req_011C" + encode(digest("anthropic-request", seed, seq), _BASE62, 20)


def anthropic_error(status: int, type_: str, message: str, request_id: str | None = None) -> EmulatorResponse:
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""
    body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    extra: dict[str, str] = {}
    if request_id is not None:
        body["request_id"] = request_id
        extra["request-id"] = request_id
    return json_response(status, body, JSON_TYPE, extra)


def _invalid(message: str, rid: str) -> _Reject:
    return _Reject(anthropic_error(400, "invalid_request_error", message, rid))


def _api_key(headers: Mapping[str, str]) -> tuple[str | None, str]:
    """The credential and how it came: ``x-api-key`` (classic) or ``Authorization: Bearer`` (SDK 2.x)."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key, "x-api-key"
    raw = headers.get("authorization", "")
    if raw[:7].lower() == "bearer " and raw[7:].strip():
        return raw[7:].strip(), "bearer"
    return None, ""


def _authenticate(emu: Emulator, ctx: RequestContext, rid: str) -> str:
    key, how = _api_key(ctx.headers)
    if key is None:
        # Real text for a request without credentials.
        raise _Reject(anthropic_error(401, "authentication_error", "x-api-key header is required", rid))
    if emu.api_keys is not None and key not in emu.api_keys:
        # "invalid x-api-key" is the real text; the bearer variant's wording is assumed.
        message = "invalid x-api-key" if how == "x-api-key" else "Invalid bearer token"
        raise _Reject(anthropic_error(401, "authentication_error", message, rid))
    if not ctx.headers.get("anthropic-version"):
        raise _invalid("anthropic-version: header is required", rid)
    return key


def _parse(ctx: RequestContext, rid: str) -> dict[str, Any]:
    try:
        body = json.loads(ctx.body or b"null")
    except ValueError:
        raise _invalid("There was an error parsing the body: the request body is not valid JSON.", rid) from None
    ctx.parsed = body
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", rid)
    model = body.get("model")
    if isinstance(model, str) and model:
        ctx.model = model
    return body


def _check_prewarm(body: Mapping[str, Any], rid: str) -> None:
    """``max_tokens: 0`` (cache pre-warming) is rejected with output it cannot produce (docs, "Pre-warming
    the cache > Limitations"); the wording of these messages is assumed."""
    thinking = body.get("thinking")
    choice = body.get("tool_choice")
    output_config = body.get("output_config")
    conflicts = {
        "stream: true": bool(body.get("stream")),
        "thinking.type: 'enabled'": isinstance(thinking, Mapping) and thinking.get("type") == "enabled",
        "output_config.format": isinstance(output_config, Mapping) and output_config.get("format") is not None,
        f"tool_choice.type: '{choice.get('type') if isinstance(choice, Mapping) else ''}'": isinstance(choice, Mapping)
        and choice.get("type") in ("any", "tool"),
    }
    for what, present in conflicts.items():
        if present:
            raise _invalid(f"max_tokens: 0 cannot be combined with {what}", rid)


def _validate(body: Mapping[str, Any], rid: str, *, count_only: bool = False) -> None:
    """Pydantic-style ``field: problem`` texts, as the API writes them."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("model: Field required", rid)
    if not count_only:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("max_tokens: Field required", rid)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise _invalid("max_tokens: Input should be greater than or equal to 0", rid)
        if max_tokens == 0:
            _check_prewarm(body, rid)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _invalid(
            "messages: Field required" if messages is None else "messages: Input should be a valid list", rid
        )
    if not messages:
        raise _invalid("messages: at least one message is required", rid)
    pending: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary", rid)
        if msg.get("role") not in _ROLES:
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'", rid)
        content = msg.get("content")
        if not isinstance(content, (str, list)):
            raise _invalid(f"messages.{i}.content: Field required", rid)
        blocks = content_blocks(content)
        for j, block in enumerate(blocks):
            if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
                raise _invalid(f"messages.{i}.content.{j}.type: Field required", rid)
        results = [(j, str(b.get("tool_use_id"))) for j, b in enumerate(blocks) if b.get("type") == "tool_result"]
        if pending:
            # Real texts (e.g. langchain-ai/langchain issues on orphaned tool calls).
            answered = {tid for _, tid in results}
            missing = [t for t in pending if t not in answered]
            if missing:
                raise _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                    "in the next message.",
                    rid,
                )
        for j, tid in results:
            if tid not in pending:
                raise _invalid(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                    rid,
                )
        pending = (
            [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"] if msg.get("role") == "assistant" else []
        )
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list", rid)
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _invalid(f"tools.{i}.name: Field required", rid)
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, Mapping) or choice.get("type") not in _TOOL_CHOICES:
            raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", rid)
        if choice.get("type") == "tool" and not choice.get("name"):
            raise _invalid("tool_choice.tool.name: Field required", rid)
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise _invalid("system: Input should be a valid string or list", rid)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _invalid("stop_sequences: Input should be a valid list of strings", rid)


# --------------------------------------------------------------------------------------------- answer


@dataclass
class _Answer:
    text: str = ""
    tool_calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (id, name, input)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    output_tokens: int = 0


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        texts = [str(b.get("text", "")) for b in content_blocks(msg.get("content")) if b.get("type") == "text"]
        if texts:
            return "\n".join(texts)
    return ""


def _tool_name(messages: list[Any], tool_use_id: str) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "assistant":
            for b in content_blocks(msg.get("content")):
                if b.get("type") == "tool_use" and str(b.get("id")) == tool_use_id:
                    return str(b.get("name", ""))
    return ""


def _compose(emu: Emulator, body: Mapping[str, Any], seq: int) -> _Answer:
    """The same conventions as the OpenAI route: a user turn with tools offered gets a tool call (the
    tool named in the text, else the first), a turn ending in tool results gets a text quoting them. A user
    turn saying "for each of: A, B and C" gets one call per item (parallel tool use), unless ``tool_choice``
    sets ``disable_parallel_tool_use``."""
    tok = emu.tokenizer
    messages: list[Any] = body["messages"]
    last = messages[-1]
    last_blocks = content_blocks(last.get("content"))
    results = [b for b in last_blocks if b.get("type") == "tool_result"]
    user_text = _last_user_text(messages)
    tools = {str(t["name"]): t for t in body.get("tools") or []}
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type", "auto")
    forced = str(choice.get("name")) if kind == "tool" and choice.get("name") in tools else None
    want_call = bool(tools) and kind != "none"
    want_call = want_call and (forced is not None or kind == "any" or (last.get("role") == "user" and not results))
    answer = _Answer()
    if want_call:
        name = forced or pick_tool(list(tools), user_text)
        schema = tools[name].get("input_schema") or {}
        # "for each of: A, B and C" asks for parallel tool use: one call per item (unless disabled).
        items = [] if choice.get("disable_parallel_tool_use") else parallel_items(user_text)
        answer.tool_calls = []
        for k, text in enumerate(items or [user_text]):
            args = ArgumentSynthesizer(text, exclude=list(tools)).build(schema)
            call_id = "toolu_01" + encode(digest("anthropic-tool-use", emu.seed, seq, k), _BASE62, 22)
            answer.tool_calls.append((call_id, name, args if isinstance(args, dict) else {}))
        answer.text = f"I'll use the {name} tool."
        answer.stop_reason = "tool_use"
    elif results:
        result = results[-1]
        answer.text = tool_result_text(_tool_name(messages, str(result.get("tool_use_id"))), block_text(result))
    else:
        answer.text = reply_text(user_text)
    stops = [s for s in body.get("stop_sequences") or [] if s]
    cuts = [(answer.text.find(s), s) for s in stops if s in answer.text]
    if cuts and not answer.tool_calls:
        at, seq_hit = min(cuts)
        answer.text, answer.stop_reason, answer.stop_sequence = answer.text[:at], "stop_sequence", seq_hit
    budget = int(body["max_tokens"])
    call_tokens = sum(tok.count(n) + tok.count(json.dumps(a)) for _, n, a in answer.tool_calls)
    if tok.count(answer.text) + call_tokens > budget:
        answer.tool_calls = []
        answer.text = tok.truncate(answer.text, budget)
        answer.stop_reason, answer.stop_sequence = "max_tokens", None
    answer.output_tokens = tok.count(answer.text) + sum(
        tok.count(n) + tok.count(json.dumps(a)) for _, n, a in answer.tool_calls
    )
    return answer


def _content(answer: _Answer) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if answer.text:
        out.append({"type": "text", "text": answer.text})
    out += [{"type": "tool_use", "id": cid, "name": n, "input": a} for cid, n, a in answer.tool_calls]
    return out


def _usage(outcome: CacheOutcome, output_tokens: int) -> dict[str, Any]:
    """The ``Usage`` object in the key order the API sends (recorded answers, 2026)."""
    return {
        "input_tokens": outcome.uncached,
        "cache_creation_input_tokens": outcome.written,
        "cache_read_input_tokens": outcome.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": outcome.written_5m,
            "ephemeral_1h_input_tokens": outcome.written_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event; the SDK ignores events without an ``event:`` line."""
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


def _stream(emu: Emulator, message: dict[str, Any], answer: _Answer, outcome: CacheOutcome) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": _usage(outcome, 1)}
    events = [_event("message_start", {"type": "message_start", "message": start})]
    index = 0
    if answer.text:
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.append(_event("ping", {"type": "ping"}))
        for piece in emu.tokenizer.split_chunks(answer.text, emu.stream_tokens_per_chunk):
            delta = {"type": "text_delta", "text": piece}
            events.append(_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for offset, (cid, name, args) in enumerate(answer.tool_calls):
        i = index + offset
        head = {"type": "tool_use", "id": cid, "name": name, "input": {}}
        events.append(_event("content_block_start", {"type": "content_block_start", "index": i, "content_block": head}))
        raw = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        half = len(raw) // 2
        for frag in ("", raw[:half], raw[half:]):
            delta = {"type": "input_json_delta", "partial_json": frag}
            events.append(_event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": i}))
    # message_delta usage is cumulative and repeats the input side (recorded 2026 streams; the SDK's
    # MessageDeltaUsage has no cache_creation breakdown).
    final_usage = {
        "input_tokens": outcome.uncached,
        "cache_creation_input_tokens": outcome.written,
        "cache_read_input_tokens": outcome.read,
        "output_tokens": answer.output_tokens,
    }
    stop = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    events.append(_event("message_delta", {"type": "message_delta", "delta": stop, "usage": final_usage}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


# ------------------------------------------------------------------------------------------- handlers


def _prepare(emu: Emulator, ctx: RequestContext, *, count_only: bool) -> tuple[str, dict[str, Any], str]:
    rid = _request_id(emu.seed, ctx.seq)
    key = _authenticate(emu, ctx, rid)
    body = _parse(ctx, rid)
    _validate(body, rid, count_only=count_only)
    return rid, body, key


def handle_messages(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    """``POST /v1/messages``."""
    try:
        rid, body, key = _prepare(emu, ctx, count_only=False)
        blocks, total = flatten(body, emu.tokenizer)
        try:
            breakpoints = plan_breakpoints(blocks, body.get("cache_control"))
            diagnosed, previous_id = requested_diagnostics(body, ctx.headers)
        except (InvalidCacheControl, InvalidDiagnostics) as exc:
            raise _invalid(exc.message, rid) from None
    except _Reject as reject:
        return reject.response
    model = str(body["model"])
    scope = ("anthropic", key_fingerprint(key), model)
    outcome = emu._anthropic_cache.serve(
        scope, blocks, breakpoints, total, ctx.mono, emu.anthropic_cache_min_tokens_for(model)
    )
    # max_tokens=0 is pre-warming (docs): prefill only, no content, stop_reason max_tokens, 0 output tokens.
    answer = _Answer(stop_reason="max_tokens") if body["max_tokens"] == 0 else _compose(emu, body, ctx.seq)
    emu._record_anthropic_usage(outcome.total, outcome.read, outcome.written, answer.output_tokens)
    message: dict[str, Any] = {
        "id": "msg_01" + encode(digest("anthropic-message", emu.seed, ctx.seq), _BASE62, 22),
        "type": "message",
        "role": "assistant",
        "model": model,
    }
    if diagnosed:  # on message_start in a stream
        message["diagnostics"] = _diagnostics(emu, message["id"], previous_id, key, model, blocks, ctx.now)
    if body.get("stream"):
        return EmulatorResponse(
            status=200,
            headers={"content-type": SSE_TYPE, "cache-control": "no-cache", "request-id": rid},
            stream=_stream(emu, message, answer, outcome),
        )
    payload = {
        **message,
        "content": _content(answer),
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": _usage(outcome, answer.output_tokens),
    }
    return json_response(200, payload, JSON_TYPE, {"request-id": rid})


def _diagnostics(
    emu: Emulator, message_id: str, previous_id: str | None, key: str, model: str, blocks: list[Any], now: float
) -> dict[str, Any] | None:
    book = emu._anthropic_diagnostics
    scope = key_fingerprint(key)
    answer = book.compare(previous_id, scope, model, blocks, now)
    if previous_id is not None and emu.anthropic_diagnostics_pending:
        answer = {"cache_miss_reason": None}  # the comparison is still running when the answer is serialized
    book.remember(message_id, scope, model, blocks, now)
    return answer


def handle_count_tokens(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, the whole prompt; caches untouched."""
    try:
        rid, body, _ = _prepare(emu, ctx, count_only=True)
        blocks, total = flatten(body, emu.tokenizer)
        try:
            plan_breakpoints(blocks, body.get("cache_control"))
        except InvalidCacheControl as exc:
            raise _invalid(exc.message, rid) from None
    except _Reject as reject:
        return reject.response
    return json_response(200, {"input_tokens": total}, JSON_TYPE, {"request-id": rid})


def handle_not_found(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    return anthropic_error(404, "not_found_error", "Not Found", _request_id(emu.seed, ctx.seq))
