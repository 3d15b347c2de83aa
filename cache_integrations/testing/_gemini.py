"""Gemini API v1beta: generateContent, streamGenerateContent, countTokens and the models list.

The ``cachedContents`` resource is in ``_gemini_caches``; Google's error envelope, authentication and
request parsing in ``_google``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._context import RequestContext, key_fingerprint
from ._gemini_caches import NAME_RE, CachedContent
from ._google import (
    JSON_TYPE,
    Reject,
    authenticate,
    get_field,
    invalid,
    not_found,
    parse_json,
    validate_contents,
)
from ._http import EmulatorResponse, dumps, json_response, sse_event, sse_response
from ._render import GEMINI_GENERATION_MARKER, render_gemini_contents, render_gemini_prefix
from ._strict import unknown_gemini_model
from ._synth import (
    ArgumentSynthesizer,
    digest,
    encode,
    json_answer,
    pick_tool,
    reasoning_text,
    reply_text,
    tool_result_text,
)

if TYPE_CHECKING:
    from .emulator import Emulator

SSE_TYPE = "text/event-stream"

CACHE_CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)
_VERSION_RE = re.compile(r"gemini-(\d+)(?:\.(\d+))?")


def model_version(model: str) -> tuple[int, int] | None:
    """``gemini-2.5-flash`` -> (2, 5); ``gemini-3-pro`` -> (3, 0); aliases without a version -> None."""
    m = _VERSION_RE.search(model)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def supports_implicit_cache(model: str) -> bool:
    """Implicit caching exists from Gemini 2.5 on; unversioned aliases are assumed current."""
    version = model_version(model)
    return version is None or version >= (2, 5)


def thinks_by_default(model: str) -> bool:
    version = model_version(model)
    return version is None or version >= (2, 5)


# ------------------------------------------------------------------------------------ generateContent


@dataclass
class _Plan:
    """Everything needed to answer one generate call."""

    model: str
    prefix_segments: list[str]
    content_segments: list[str]
    tools: Any
    tool_config: Any
    contents: list[Any]
    cache: CachedContent | None


def _resolve_request(emu: Emulator, model: str, body: Mapping[str, Any], where: str) -> _Plan:
    system = get_field(body, "systemInstruction", "system_instruction")
    tools = body.get("tools")
    tool_config = get_field(body, "toolConfig", "tool_config")
    cache_name = get_field(body, "cachedContent", "cached_content")
    contents = validate_contents(body.get("contents"), where, required=True)
    content_segments = render_gemini_contents(contents, media=emu.files.render)
    if cache_name:
        if system or tools or tool_config:
            raise Reject(invalid(CACHE_CONFLICT))
        if not isinstance(cache_name, str) or not NAME_RE.match(cache_name):
            raise Reject(invalid(f"Invalid resource name for CachedContent: {cache_name!r}."))
        cache = emu._lookup_cached_content(cache_name)
        if cache is None:
            raise Reject(not_found())
        if cache.model != f"models/{model}":
            raise Reject(
                invalid(
                    f"Model used by GenerateContent request (models/{model}) and CachedContent "
                    f"({cache.model}) has to be the same."
                )
            )
        return _Plan(
            model, cache.segments, content_segments, cache.tools, cache.tool_config, cache.contents + contents, cache
        )
    prefix = render_gemini_prefix(system, tools, tool_config)
    return _Plan(model, prefix, content_segments, tools, tool_config, contents, None)


def _declarations(tools: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for tool in tools or []:
        if not isinstance(tool, Mapping):
            continue
        for decl in get_field(tool, "functionDeclarations", "function_declarations") or []:
            if isinstance(decl, Mapping) and decl.get("name"):
                out[str(decl["name"])] = decl
    return out


def _part_text(part: Mapping[str, Any]) -> str:
    return str(part.get("text") or "") if "text" in part else ""


@dataclass
class _Output:
    thought: str
    parts: list[dict[str, Any]]
    finish: str
    thoughts_tokens: int
    candidates_tokens: int
    text: str


def _compose(emu: Emulator, plan: _Plan, body: Mapping[str, Any]) -> _Output:
    tok = emu.tokenizer
    config = get_field(body, "generationConfig", "generation_config") or {}
    contents = plan.contents
    last = contents[-1] if contents else {}
    last_parts = [p for p in last.get("parts") or [] if isinstance(p, Mapping)]
    user_text = ""
    for content in reversed(contents):
        if content.get("role", "user") in ("user", "", None):
            texts = [_part_text(p) for p in content.get("parts") or [] if isinstance(p, Mapping)]
            if any(texts):
                user_text = "\n".join(t for t in texts if t)
                break
    decls = _declarations(plan.tools)
    fc_config = get_field(plan.tool_config or {}, "functionCallingConfig", "function_calling_config") or {}
    mode = str(fc_config.get("mode", "AUTO")).upper()
    allowed = [n for n in get_field(fc_config, "allowedFunctionNames", "allowed_function_names") or [] if n in decls]
    responses: list[Mapping[str, Any]] = []
    for p in last_parts:
        found = p.get("functionResponse") or p.get("function_response")
        if isinstance(found, Mapping):
            responses.append(found)
    want_call = bool(decls) and mode != "NONE" and (mode == "ANY" or not responses)
    parts: list[dict[str, Any]] = []
    call_name: str | None = None
    text = ""
    if want_call:
        names = allowed or list(decls)
        call_name = pick_tool(names, user_text)
        decl = decls[call_name]
        schema = decl.get("parametersJsonSchema") or decl.get("parameters_json_schema") or decl.get("parameters")
        args = ArgumentSynthesizer(user_text, exclude=list(decls)).build(schema or {})
        parts.append({"functionCall": {"name": call_name, "args": args}})
    elif responses:
        resp = responses[-1]
        result = json.dumps(resp.get("response", {}), ensure_ascii=False)
        text = tool_result_text(str(resp.get("name", "")), result, kind="function")
    else:
        text = reply_text(user_text)
    mime = get_field(config, "responseMimeType", "response_mime_type")
    if not want_call and mime == "application/json":
        schema = (
            get_field(config, "responseJsonSchema", "response_json_schema")
            or config.get("_responseJsonSchema")
            or get_field(config, "responseSchema", "response_schema")
        )
        text = json_answer(schema, user_text, text)
    thinking = get_field(config, "thinkingConfig", "thinking_config") or {}
    budget_cfg = get_field(thinking, "thinkingBudget", "thinking_budget")
    thinks = thinks_by_default(plan.model) and budget_cfg != 0
    thought = reasoning_text(user_text, call_name) if thinks else ""
    finish = "STOP"
    stops = get_field(config, "stopSequences", "stop_sequences") or []
    cuts = [text.find(s) for s in stops if isinstance(s, str) and s and s in text]
    if cuts:
        text = text[: min(cuts)]
    max_out = get_field(config, "maxOutputTokens", "max_output_tokens")
    thoughts_tokens = tok.count(thought)
    if isinstance(max_out, int) and max_out > 0:
        if thoughts_tokens >= max_out:
            thought = tok.truncate(thought, max_out)
            thoughts_tokens = tok.count(thought)
            text, parts, finish = "", [], "MAX_TOKENS"
        else:
            left = max_out - thoughts_tokens
            if parts:
                call = parts[0]["functionCall"]
                if tok.count(call["name"]) + tok.count(dumps(call["args"])) > left:
                    parts, finish = [], "MAX_TOKENS"
            elif tok.count(text) > left:
                text, finish = tok.truncate(text, left), "MAX_TOKENS"
    if not parts and text:
        parts = [{"text": text}]
    candidates_tokens = sum(
        tok.count(p["text"])
        if "text" in p
        else tok.count(p["functionCall"]["name"]) + tok.count(dumps(p["functionCall"]["args"]))
        for p in parts
    )
    if thought and get_field(thinking, "includeThoughts", "include_thoughts"):
        parts.insert(0, {"text": thought, "thought": True})
    return _Output(thought, parts, finish, thoughts_tokens, candidates_tokens, text)


def _usage(
    prompt: int, cached: int, out: _Output | None, provisional: bool = False, *, without_candidates: bool = False
) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    candidates = 0 if out is None or without_candidates else out.candidates_tokens
    if candidates:
        usage["candidatesTokenCount"] = candidates
    total = prompt + candidates + (out.thoughts_tokens if out is not None else 0)
    usage["totalTokenCount"] = total
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached and not provisional:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if out is not None and out.thoughts_tokens:
        usage["thoughtsTokenCount"] = out.thoughts_tokens
    return usage


def _running_usage(prompt: int, cached: int, candidates: int, thoughts: int) -> dict[str, Any]:
    """A provisional ``usageMetadata`` with the candidates and thoughts counted so far."""
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates}
    usage["totalTokenCount"] = prompt + candidates + thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def handle_generate(emu: Emulator, ctx: RequestContext, model: str, action: str) -> EmulatorResponse:
    """``models/{model}:generateContent`` and ``:streamGenerateContent``."""
    ctx.model = model
    key = authenticate(emu, ctx)
    if isinstance(key, EmulatorResponse):
        return key
    try:
        body = parse_json(ctx)
        if not emu.is_known_model("gemini", model):
            return unknown_gemini_model(
                model, "generateContent" if action == "generateContent" else "StreamGenerateContent"
            )
        plan = _resolve_request(emu, model, body, "GenerateContentRequest")
        config = get_field(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, Mapping):
            raise Reject(invalid("Invalid value at 'generation_config': expected an object."))
        stops = get_field(config, "stopSequences", "stop_sequences")
        if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
            raise Reject(
                invalid(
                    "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed.\n"
                )
            )
    except Reject as reject:
        return reject.response
    tok = emu.tokenizer
    segments = [*plan.content_segments, GEMINI_GENERATION_MARKER]
    if plan.cache is not None:
        cached = plan.cache.tokens
        prompt = cached + tok.count_all(segments)
        explicit, implicit = cached, 0
    else:
        all_segments = plan.prefix_segments + segments
        prompt = tok.count_all(all_segments)
        rules = emu.rules_for("gemini", model)
        if supports_implicit_cache(model):
            scope = ("gemini", key_fingerprint(key), model)
            cached = emu._observe_prefix(ctx, scope, "\n".join(all_segments), prompt, rules)
        else:
            cached = 0
        explicit, implicit = 0, cached
    out = _compose(emu, plan, body)
    stream = action != "generateContent"
    mode = emu.gemini_stream_usage
    partial = stream and (mode == "without_candidates" or (mode == "auto" and _has_builtin_tool(plan.tools)))
    final_usage = _usage(prompt, cached, out, without_candidates=partial)
    ctx.usage = final_usage
    reported_output = out.thoughts_tokens if partial else out.candidates_tokens + out.thoughts_tokens
    emu._record_usage("gemini", prompt, implicit, reported_output, explicit=explicit)
    emu._count_generate_call()
    response_id = encode(
        digest("gemini-id", emu.seed, ctx.seq), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 23
    )
    if not stream:
        content: dict[str, Any] = {"parts": out.parts, "role": "model"} if out.parts else {"role": "model"}
        payload = {
            "candidates": [{"content": content, "finishReason": out.finish, "index": 0}],
            "usageMetadata": final_usage,
            "modelVersion": model,
            "responseId": response_id,
        }
        return json_response(200, payload, JSON_TYPE)
    return _stream(emu, ctx, model, out, (prompt, cached), final_usage, response_id, running=partial)


def _has_builtin_tool(tools: Any) -> bool:
    """A tool entry other than function declarations: ``googleSearch``, ``codeExecution``, ``urlContext``..."""
    return any(
        isinstance(tool, Mapping) and any(k not in ("functionDeclarations", "function_declarations") for k in tool)
        for tool in tools or ()
    )


def _stream(
    emu: Emulator,
    ctx: RequestContext,
    model: str,
    out: _Output,
    counts: tuple[int, int],
    final_usage: dict[str, Any],
    response_id: str,
    *,
    running: bool,
) -> EmulatorResponse:
    """Every event carries ``usageMetadata``; only the last one (with ``finishReason``) is final.

    Earlier events carry provisional counts: by default a prompt count that is off by two and no
    candidates; with ``running`` (the built-in tools shape recorded from gemini-3-flash, e.g. pydantic-ai's
    tests/models/google/cassettes/test_code_execution/test_code_execution_stream.yaml) running
    ``candidatesTokenCount`` and ``thoughtsTokenCount`` values, while the final event has no
    ``candidatesTokenCount`` at all.
    """
    prompt, cached = counts
    provisional = _usage(prompt + 2, cached, None, provisional=True)
    events: list[dict[str, Any]] = []
    emitted = 0

    def event(parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        nonlocal emitted
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"} if parts else {"role": "model"}}
        if final:
            candidate["finishReason"] = out.finish
        usage = final_usage if final else provisional
        if running and not final:
            emitted += sum(emu.tokenizer.count(p["text"]) for p in parts if "text" in p and not p.get("thought"))
            usage = _running_usage(prompt, cached, max(emitted, 1), out.thoughts_tokens)
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}

    pieces: list[list[dict[str, Any]]] = []
    for part in out.parts:
        if "text" in part:
            extra = {"thought": True} if part.get("thought") else {}
            for piece in emu.tokenizer.split_chunks(part["text"], emu.stream_tokens_per_chunk * 2):
                pieces.append([{"text": piece, **extra}])
        else:
            pieces.append([part])
    if not pieces:
        pieces.append([])
    for i, parts in enumerate(pieces):
        events.append(event(parts, final=i == len(pieces) - 1))
    if ctx.query.get("alt") == "sse":
        return sse_response([sse_event(e, "\r\n\r\n") for e in events], SSE_TYPE)
    chunks = [("[" if i == 0 else ",\r\n") + dumps(e) for i, e in enumerate(events)]
    chunks[-1] += "]"
    return EmulatorResponse(200, {"content-type": JSON_TYPE}, stream=[c.encode() for c in chunks])


def handle_count_tokens(emu: Emulator, ctx: RequestContext, model: str) -> EmulatorResponse:
    """``models/{model}:countTokens``: the prompt count a generate call with the same input would report."""
    ctx.model = model
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth
    try:
        body = parse_json(ctx)
        if not emu.is_known_model("gemini", model):
            return unknown_gemini_model(model, "countTokens")
        inner = get_field(body, "generateContentRequest", "generate_content_request")
        if isinstance(inner, Mapping):
            plan = _resolve_request(emu, model, inner, "CountTokensRequest.generate_content_request")
        else:
            contents = validate_contents(body.get("contents"), "CountTokensRequest", required=True)
            plan = _Plan(model, [], render_gemini_contents(contents, emu.files.render), None, None, contents, None)
    except Reject as reject:
        return reject.response
    tok = emu.tokenizer
    rest = tok.count_all([*plan.content_segments, GEMINI_GENERATION_MARKER])
    if plan.cache is not None:
        total = plan.cache.tokens + rest
        return json_response(
            200,
            {
                "totalTokens": total,
                "cachedContentTokenCount": plan.cache.tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            },
            JSON_TYPE,
        )
    total = tok.count_all(plan.prefix_segments) + rest
    return json_response(
        200, {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}, JSON_TYPE
    )


def handle_models(emu: Emulator, ctx: RequestContext, model: str | None) -> EmulatorResponse:
    """``GET models`` / ``GET models/{model}``: minimal metadata."""
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth

    def info(name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name,
            "inputTokenLimit": 1_048_576,
            "outputTokenLimit": 65_536,
            "supportedGenerationMethods": ["generateContent", "countTokens"]
            + (["createCachedContent"] if emu.gemini_explicit_cache_supported(name) else []),
        }

    if model is not None:
        return json_response(200, info(model), JSON_TYPE)
    return json_response(200, {"models": [info(m) for m in emu.gemini_models]}, JSON_TYPE)
