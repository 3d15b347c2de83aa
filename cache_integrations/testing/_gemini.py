"""Gemini API v1beta: generateContent, streamGenerateContent, countTokens and cachedContents CRUD."""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._context import RequestContext, key_fingerprint
from ._http import EmulatorResponse, dumps, json_response, sse_event, sse_response
from ._render import GEMINI_GENERATION_MARKER, render_gemini_contents, render_gemini_prefix
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

JSON_TYPE = "application/json; charset=UTF-8"
SSE_TYPE = "text/event-stream"

CACHE_CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)
CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
    "or other form of API consumer identity to call this API."
)
BAD_KEY = "API key not valid. Please pass a valid API key."
_VERSION_RE = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
_TTL_RE = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")
_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")
_NAME_RE = re.compile(r"^cachedContents/([a-z0-9][a-z0-9-]*)$")
_NS = 1_000_000_000


# Gemini's answer for a method a model does not offer (its generateContent wording, seen in the field for
# createCachedContent too: "models/gemini-flash is not supported for createCachedContent"); the emulator
# gives it for explicit caches on Gemini 4 Argon and later, which Google's caching page excludes.
NO_CACHE_METHOD = (
    "{model} is not found for API version v1beta, or is not supported for createCachedContent. "
    "Call ListModels to see the list of available models and their supported methods."
)


def google_error(code: int, message: str, status: str, details: list[Any] | None = None) -> EmulatorResponse:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json_response(code, {"error": err}, JSON_TYPE)


def invalid(message: str) -> EmulatorResponse:
    return google_error(400, message, "INVALID_ARGUMENT")


def not_found() -> EmulatorResponse:
    return google_error(403, CACHE_NOT_FOUND, "PERMISSION_DENIED")


class _Reject(Exception):
    def __init__(self, response: EmulatorResponse) -> None:
        super().__init__(response.status)
        self.response = response


def format_time(ns: int) -> str:
    """RFC 3339 UTC with 0/3/6/9 fractional digits, as Google's JSON mapping prints timestamps."""
    secs, frac = divmod(ns, _NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac == 0:
        return base + "Z"
    if frac % 1_000_000 == 0:
        return f"{base}.{frac // 1_000_000:03d}Z"
    if frac % 1_000 == 0:
        return f"{base}.{frac // 1_000:06d}Z"
    return f"{base}.{frac:09d}Z"


def parse_time(value: str) -> int | None:
    """RFC 3339 timestamp to Unix nanoseconds (``None`` if malformed)."""
    m = _TIME_RE.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * _NS + int((frac or "0").ljust(9, "0"))


def parse_ttl(value: Any) -> int | None:
    """Protobuf Duration (``"300s"``, ``"3.5s"``) to nanoseconds (``None`` if malformed)."""
    if not isinstance(value, str):
        return None
    m = _TTL_RE.match(value)
    if not m:
        return None
    return int(m.group(1)) * _NS + int((m.group(2) or "0").ljust(9, "0"))


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


def _strip_models(model: str) -> str:
    return model[len("models/") :] if model.startswith("models/") else model


@dataclass
class CachedContent:
    """Server-side state of one explicit cache; the API never echoes the content back."""

    cache_id: str
    model: str  # "models/..."
    display_name: str
    system_instruction: Any
    tools: Any
    tool_config: Any
    contents: list[Any]
    tokens: int
    create_ns: int
    update_ns: int
    expire_ns: int
    owner: str = ""
    order: int = 0
    segments: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"cachedContents/{self.cache_id}"

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "createTime": format_time(self.create_ns),
            "updateTime": format_time(self.update_ns),
            "expireTime": format_time(self.expire_ns),
            "displayName": self.display_name,
            "usageMetadata": {"totalTokenCount": self.tokens},
        }


def _api_key(ctx: RequestContext) -> str | None:
    key = ctx.headers.get("x-goog-api-key")
    if key is None:
        key = ctx.query.get("key")
    return key


def authenticate(emu: Emulator, ctx: RequestContext) -> str | EmulatorResponse:
    """The caller's API key, or the error Google answers: 403 without a key, 400 for a bad one."""
    key = _api_key(ctx)
    if key is None:
        return google_error(403, NO_KEY, "PERMISSION_DENIED")
    if not key.strip() or (emu.api_keys is not None and key not in emu.api_keys):
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
        return google_error(400, BAD_KEY, "INVALID_ARGUMENT", details)
    return key


def _parse_json(ctx: RequestContext, required: bool = True) -> Any:
    if not ctx.body.strip():
        if required:
            raise _Reject(invalid("Invalid JSON payload received. Unexpected end of string."))
        return {}
    try:
        body = json.loads(ctx.body)
    except ValueError:
        raise _Reject(invalid("Invalid JSON payload received. Unexpected token.")) from None
    if not isinstance(body, dict):
        raise _Reject(invalid("Invalid JSON payload received. Expected an object."))
    ctx.parsed = body
    return body


def _get(body: Mapping[str, Any], camel: str, snake: str) -> Any:
    return body.get(camel, body.get(snake))


def _validate_contents(contents: Any, where: str, required: bool) -> list[Any]:
    if contents is None:
        if required:
            raise _Reject(invalid(f"* {where}.contents: contents is not specified\n"))
        return []
    if not isinstance(contents, list):
        raise _Reject(invalid(f"Invalid value at '{where}.contents': expected a list of Content."))
    if required and not contents:
        raise _Reject(invalid(f"* {where}.contents: contents is not specified\n"))
    for i, content in enumerate(contents):
        if not isinstance(content, Mapping):
            raise _Reject(invalid(f"Invalid value at '{where}.contents[{i}]': expected a Content object."))
        role = content.get("role")
        if role not in (None, "", "user", "model", "function"):
            raise _Reject(invalid("Please use a valid role: user, model."))
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _Reject(invalid(f"* {where}.contents[{i}].parts: contents.parts must not be empty.\n"))
    return contents


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
    system = _get(body, "systemInstruction", "system_instruction")
    tools = body.get("tools")
    tool_config = _get(body, "toolConfig", "tool_config")
    cache_name = _get(body, "cachedContent", "cached_content")
    contents = _validate_contents(body.get("contents"), where, required=True)
    content_segments = render_gemini_contents(contents, media=emu.files.render)
    if cache_name:
        if system or tools or tool_config:
            raise _Reject(invalid(CACHE_CONFLICT))
        if not isinstance(cache_name, str) or not _NAME_RE.match(cache_name):
            raise _Reject(invalid(f"Invalid resource name for CachedContent: {cache_name!r}."))
        cache = emu._lookup_cached_content(cache_name)
        if cache is None:
            raise _Reject(not_found())
        if cache.model != f"models/{model}":
            raise _Reject(
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
        for decl in _get(tool, "functionDeclarations", "function_declarations") or []:
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
    config = _get(body, "generationConfig", "generation_config") or {}
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
    fc_config = _get(plan.tool_config or {}, "functionCallingConfig", "function_calling_config") or {}
    mode = str(fc_config.get("mode", "AUTO")).upper()
    allowed = [n for n in _get(fc_config, "allowedFunctionNames", "allowed_function_names") or [] if n in decls]
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
    mime = _get(config, "responseMimeType", "response_mime_type")
    if not want_call and mime == "application/json":
        schema = (
            _get(config, "responseJsonSchema", "response_json_schema")
            or config.get("_responseJsonSchema")
            or _get(config, "responseSchema", "response_schema")
        )
        text = json_answer(schema, user_text, text)
    thinking = _get(config, "thinkingConfig", "thinking_config") or {}
    budget_cfg = _get(thinking, "thinkingBudget", "thinking_budget")
    thinks = thinks_by_default(plan.model) and budget_cfg != 0
    thought = reasoning_text(user_text, call_name) if thinks else ""
    finish = "STOP"
    stops = _get(config, "stopSequences", "stop_sequences") or []
    cuts = [text.find(s) for s in stops if isinstance(s, str) and s and s in text]
    if cuts:
        text = text[: min(cuts)]
    max_out = _get(config, "maxOutputTokens", "max_output_tokens")
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
    if thought and _get(thinking, "includeThoughts", "include_thoughts"):
        parts.insert(0, {"text": thought, "thought": True})
    return _Output(thought, parts, finish, thoughts_tokens, candidates_tokens, text)


def _usage(prompt: int, cached: int, out: _Output | None, provisional: bool = False) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if out is not None and out.candidates_tokens:
        usage["candidatesTokenCount"] = out.candidates_tokens
    total = prompt + (out.candidates_tokens + out.thoughts_tokens if out is not None else 0)
    usage["totalTokenCount"] = total
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached and not provisional:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if out is not None and out.thoughts_tokens:
        usage["thoughtsTokenCount"] = out.thoughts_tokens
    return usage


def handle_generate(emu: Emulator, ctx: RequestContext, model: str, action: str) -> EmulatorResponse:
    """``models/{model}:generateContent`` and ``:streamGenerateContent``."""
    ctx.model = model
    key = authenticate(emu, ctx)
    if isinstance(key, EmulatorResponse):
        return key
    try:
        body = _parse_json(ctx)
        plan = _resolve_request(emu, model, body, "GenerateContentRequest")
        config = _get(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, Mapping):
            raise _Reject(invalid("Invalid value at 'generation_config': expected an object."))
        stops = _get(config, "stopSequences", "stop_sequences")
        if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
            raise _Reject(
                invalid(
                    "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed.\n"
                )
            )
    except _Reject as reject:
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
            match = emu._prefix_cache.observe(
                ("gemini", key_fingerprint(key), model), "\n".join(all_segments), prompt, ctx.mono, rules
            )
            cached = match.reported_tokens
        else:
            cached = 0
        explicit, implicit = 0, cached
    out = _compose(emu, plan, body)
    emu._record_usage("gemini", prompt, implicit, out.candidates_tokens + out.thoughts_tokens, explicit=explicit)
    emu._count_generate_call()
    response_id = encode(
        digest("gemini-id", emu.seed, ctx.seq), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 23
    )
    if action == "generateContent":
        content: dict[str, Any] = {"parts": out.parts, "role": "model"} if out.parts else {"role": "model"}
        payload = {
            "candidates": [{"content": content, "finishReason": out.finish, "index": 0}],
            "usageMetadata": _usage(prompt, cached, out),
            "modelVersion": model,
            "responseId": response_id,
        }
        return json_response(200, payload, JSON_TYPE)
    return _stream(emu, ctx, model, out, prompt, cached, response_id)


def _stream(
    emu: Emulator, ctx: RequestContext, model: str, out: _Output, prompt: int, cached: int, response_id: str
) -> EmulatorResponse:
    provisional = _usage(prompt + 2, cached, None, provisional=True)
    events: list[dict[str, Any]] = []

    def event(parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"} if parts else {"role": "model"}}
        if final:
            candidate["finishReason"] = out.finish
        return {
            "candidates": [candidate],
            "usageMetadata": _usage(prompt, cached, out) if final else provisional,
            "modelVersion": model,
            "responseId": response_id,
        }

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
        body = _parse_json(ctx)
        inner = _get(body, "generateContentRequest", "generate_content_request")
        if isinstance(inner, Mapping):
            plan = _resolve_request(emu, model, inner, "CountTokensRequest.generate_content_request")
        else:
            contents = _validate_contents(body.get("contents"), "CountTokensRequest", required=True)
            plan = _Plan(model, [], render_gemini_contents(contents, emu.files.render), None, None, contents, None)
    except _Reject as reject:
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


# -------------------------------------------------------------------------------------- cachedContents


def _expiry_from(body: Mapping[str, Any], now_ns: int, where: str) -> int | None:
    ttl = body.get("ttl")
    expire = _get(body, "expireTime", "expire_time")
    if ttl is not None and expire is not None:
        raise _Reject(
            invalid(
                f"Invalid value at '{where}' (oneof), oneof field 'expiration' is already set. Cannot set 'expireTime'"
            )
        )
    if ttl is not None:
        ttl_ns = parse_ttl(ttl)
        if ttl_ns is None:
            raise _Reject(
                invalid(
                    f"Invalid value at '{where}.ttl' (type.googleapis.com/google.protobuf.Duration), "
                    "Field 'ttl', Illegal duration format; duration must end with 's'"
                )
            )
        if ttl_ns <= 0:
            raise _Reject(invalid("ttl must be positive."))
        return now_ns + ttl_ns
    if expire is not None:
        expire_ns = parse_time(expire) if isinstance(expire, str) else None
        if expire_ns is None:
            raise _Reject(
                invalid(
                    f"Invalid value at '{where}.expire_time' (type.googleapis.com/google.protobuf."
                    f"Timestamp), Field 'expireTime', Invalid time format: {expire!r}"
                )
            )
        if expire_ns <= now_ns:
            raise _Reject(invalid("expire_time must be in the future."))
        return expire_ns
    return None


def handle_cache_create(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    key = authenticate(emu, ctx)
    if isinstance(key, EmulatorResponse):
        return key
    now_ns = int(ctx.now * _NS) // 1000 * 1000
    try:
        body = _parse_json(ctx)
        model = body.get("model")
        if not isinstance(model, str) or not _strip_models(model):
            raise _Reject(invalid("* CreateCachedContentRequest.cached_content.model: model is required.\n"))
        model = "models/" + _strip_models(model)
        ctx.model = _strip_models(model)
        if not emu.gemini_explicit_cache_supported(ctx.model):
            raise _Reject(google_error(404, NO_CACHE_METHOD.format(model=model), "NOT_FOUND"))
        contents = _validate_contents(body.get("contents"), "CreateCachedContentRequest.cached_content", False)
        expire_ns = _expiry_from(body, now_ns, "cached_content")
        system = _get(body, "systemInstruction", "system_instruction")
        tools = body.get("tools")
        tool_config = _get(body, "toolConfig", "tool_config")
        segments = render_gemini_prefix(system, tools, tool_config) + render_gemini_contents(contents, emu.files.render)
    except _Reject as reject:
        return reject.response
    if expire_ns is None:
        expire_ns = now_ns + int(emu.gemini_default_cache_ttl * _NS)
    tokens = emu.tokenizer.count_all(segments)
    minimum = emu.gemini_cache_min_tokens_for(ctx.model)
    if tokens < minimum:
        return invalid(f"Cached content is too small. total_token_count={tokens}, min_total_token_count={minimum}")
    display = body.get("displayName", body.get("display_name", ""))
    cache = CachedContent(
        cache_id=emu._new_cache_id(),
        model=model,
        display_name=str(display or ""),
        system_instruction=system,
        tools=tools,
        tool_config=tool_config,
        contents=list(contents),
        tokens=tokens,
        create_ns=now_ns,
        update_ns=now_ns,
        expire_ns=expire_ns,
        owner=key_fingerprint(key),
        segments=segments,
    )
    emu._store_cached_content(cache)
    return json_response(200, cache.resource(), JSON_TYPE)


def handle_cache_list(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth
    alive = emu._alive_cached_contents()
    try:
        size = int(ctx.query.get("pageSize", "100") or 100)
    except ValueError:
        return invalid("Invalid value at 'page_size' (TYPE_INT32)")
    size = 100 if size <= 0 else min(size, 1000)
    token = ctx.query.get("pageToken")
    if token:
        try:
            decoded = base64.urlsafe_b64decode(token.encode() + b"==").decode()
            marker = int(decoded.removeprefix("after:")) if decoded.startswith("after:") else None
        except (ValueError, UnicodeDecodeError):
            marker = None
        if marker is None:
            return invalid("Invalid page token.")
        alive = [c for c in alive if c.order > marker]
    page = alive[:size]
    if not page:
        return json_response(200, {}, JSON_TYPE)
    out: dict[str, Any] = {"cachedContents": [c.resource() for c in page]}
    if size < len(alive):
        out["nextPageToken"] = base64.urlsafe_b64encode(f"after:{page[-1].order}".encode()).decode().rstrip("=")
    return json_response(200, out, JSON_TYPE)


def handle_cache_item(emu: Emulator, ctx: RequestContext, cache_id: str) -> EmulatorResponse:
    """GET / PATCH / DELETE ``cachedContents/{id}``; unknown or expired names are 403, never 404."""
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth
    name = f"cachedContents/{cache_id}"
    cache = emu._lookup_cached_content(name)
    if cache is None:
        if ctx.method == "PATCH" and ctx.body:
            with contextlib.suppress(ValueError):
                ctx.parsed = json.loads(ctx.body)
        return not_found()
    ctx.model = _strip_models(cache.model)
    if ctx.method == "GET":
        return json_response(200, cache.resource(), JSON_TYPE)
    if ctx.method == "DELETE":
        emu._remove_cached_content(name, reason="deleted")
        return json_response(200, {}, JSON_TYPE)
    now_ns = int(ctx.now * _NS) // 1000 * 1000
    try:
        body = _parse_json(ctx)
        if "name" in body:
            raise _Reject(
                invalid(
                    "Invalid value at 'cached_content' (oneof), oneof field '_name' is already set. Cannot set 'name'"
                )
            )
        extra = [k for k in body if k not in ("ttl", "expireTime", "expire_time")]
        if extra:
            raise _Reject(
                invalid(f"CachedContent field '{extra[0]}' cannot be updated: only ttl or expire_time may change.")
            )
        mask = [m.strip() for m in ctx.query.get("updateMask", "").split(",") if m.strip()]
        bad = [m for m in mask if m not in ("ttl", "expireTime", "expire_time")]
        if bad:
            raise _Reject(invalid(f"Invalid update mask path '{bad[0]}': only ttl or expire_time may be updated."))
        expire_ns = _expiry_from(body, now_ns, "cached_content")
        if expire_ns is None:
            raise _Reject(invalid("Nothing to update: set ttl or expireTime."))
    except _Reject as reject:
        return reject.response
    cache.expire_ns = expire_ns
    cache.update_ns = now_ns
    return json_response(200, cache.resource(), JSON_TYPE)
