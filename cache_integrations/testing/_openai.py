"""OpenAI-compatible chat completions: response bodies, SSE chunks, errors and ``GET /v1/models``.

Three dialects share the route logic: OpenAI, DeepSeek and DashScope (Qwen compatible mode), each with
its own usage fields, ids and key order as recorded (fixtures of vercel/ai and pydantic-ai, 2025-2026).
A stream carries usage only when the request sets ``stream_options.include_usage``: then every chunk
has ``"usage": null`` and the usage rides on one extra ``choices: []`` chunk (OpenAI's documented
behaviour, DashScope's recordings) or on the finish_reason chunk (DeepSeek's recordings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import RequestContext
from ._http import EmulatorResponse, json_response, sse_event, sse_response
from ._local_servers import local_usage
from ._synth import digest, encode

if TYPE_CHECKING:
    from ._chat import Answer
    from ._chat_cache import ChatCache
    from .emulator import Emulator

__all__ = ["OPENAI_NO_AUTH", "bearer", "handle_openai_models", "openai_error", "openai_response"]

OPENAI_JSON = "application/json"
OPENAI_SSE = "text/event-stream; charset=utf-8"
OPENAI_NO_AUTH = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
    "if you're accessing the API from your browser and are prompted for a username and password. You "
    "can obtain an API key from https://platform.openai.com/account/api-keys."
)


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or ``None``."""
    raw = headers.get("authorization", "")
    if raw[:7].lower() != "bearer ":
        return None
    key = raw[7:].strip()
    return key or None


def openai_error(
    status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> EmulatorResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(status, body, OPENAI_JSON)


def openai_usage(prompt: int, cached: int, completion: int, written: int | None = None) -> dict[str, Any]:
    """OpenAI's usage block; GPT-5.6 and later (``written`` given) add ``cache_write_tokens`` (recorded order)."""
    details: dict[str, Any] = (
        {"cached_tokens": cached, "audio_tokens": 0}
        if written is None
        else {"audio_tokens": 0, "cache_write_tokens": written, "cached_tokens": cached}
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def deepseek_usage(
    prompt: int, cached: int, completion: int, reasoning: int | None, *, details: bool = True
) -> dict[str, Any]:
    """DeepSeek's usage (vercel/ai deepseek fixtures, 2025-12): ``prompt_tokens = hit + miss``, the hit
    mirrored in ``prompt_tokens_details.cached_tokens`` (``details=False``: not, as in older answers);
    ``completion_tokens_details`` only for reasoning."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    usage["prompt_cache_hit_tokens"] = cached
    usage["prompt_cache_miss_tokens"] = prompt - cached
    return usage


def dashscope_usage(prompt: int, cached: int, completion: int, written: int, explicit: bool) -> dict[str, Any]:
    """DashScope compatible mode: implicit mode reports only ``cached_tokens`` (qwen3-max recordings);
    explicit mode (``cache_control`` markers) adds the creation fields of Alibaba's context-cache page."""
    details: dict[str, Any] = {"cached_tokens": cached}
    if explicit:
        details = {
            "cache_creation": {"ephemeral_5m_input_tokens": written},
            "cache_creation_input_tokens": written,
            "cache_type": "ephemeral",
            "cached_tokens": cached,
        }
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def _uuid(data: bytes) -> str:
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def openai_response(
    emu: Emulator,
    ctx: RequestContext,
    endpoint: str,
    model: str,
    answer: Answer,
    prompt: int,
    cache: ChatCache,
    stream: bool,
    include_usage: bool,
) -> EmulatorResponse:
    """An OpenAI-compatible answer in the dialect of ``endpoint`` (``"openai"``, ``"deepseek"``, ``"dashscope"``).

    Streams carry usage only when the request asks (``stream_options.include_usage``): OpenAI and
    DashScope on an extra ``choices: []`` chunk, DeepSeek on the finish_reason chunk (as recorded).
    """
    seed = digest(f"{endpoint}-id", emu.seed, ctx.seq)
    created = int(ctx.now)
    reasoning_tokens = emu.tokenizer.count(answer.reasoning) if answer.reasoning else None
    fingerprint: str | None
    if endpoint == "deepseek":
        rid = _uuid(seed)
        fingerprint = "fp_" + digest("fingerprint", model).hex()[:10] + "_prod0820_fp8_kvcache"
        usage = deepseek_usage(
            prompt, cache.cached, answer.completion_tokens, reasoning_tokens, details=emu.deepseek_prompt_tokens_details
        )
    elif endpoint == "dashscope":
        rid = "chatcmpl-" + _uuid(seed)
        fingerprint = None
        usage = dashscope_usage(prompt, cache.cached, answer.completion_tokens, cache.written or 0, cache.explicit)
    else:
        rid = "chatcmpl-" + encode(seed, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 29)
        # gpt-5 family answers carry "system_fingerprint": null (recorded for gpt-5-nano and gpt-5.6-sol)
        fingerprint = None if model.startswith("gpt-5") else "fp_" + digest("fingerprint", model).hex()[:10]
        usage = openai_usage(prompt, cache.cached, answer.completion_tokens, cache.written)
    timings = None
    if endpoint == "openai" and emu.openai_dialect != "openai":  # a vLLM or llama.cpp server (_local_servers)
        usage, timings = local_usage(emu.openai_dialect, prompt, cache.cached, answer.completion_tokens)
    if not stream or include_usage:
        ctx.usage = usage

    def envelope(choices: list[dict[str, Any]], usage_value: Any, *, with_usage: bool) -> dict[str, Any]:
        """The top-level keys in each provider's recorded order."""
        if endpoint == "dashscope":
            kind = "chat.completion.chunk" if stream else "chat.completion"
            obj: dict[str, Any] = {"choices": choices, "object": kind}
            if with_usage:
                obj["usage"] = usage_value
            return {**obj, "created": created, "system_fingerprint": None, "model": model, "id": rid}
        obj = {
            "id": rid,
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": created,
            "model": model,
        }
        if endpoint == "deepseek":  # chunks put the fingerprint before the choices, whole answers last
            if stream:
                obj["system_fingerprint"] = fingerprint
            obj["choices"] = choices
            if with_usage:
                obj["usage"] = usage_value
            if not stream:
                obj["system_fingerprint"] = fingerprint
            return obj
        obj["choices"] = choices
        if with_usage and not stream:
            obj["usage"] = usage_value
        obj["service_tier"] = "default"
        obj["system_fingerprint"] = fingerprint
        if with_usage and stream:
            obj["usage"] = usage_value
        if timings is not None and usage_value is not None:
            obj["timings"] = timings
        return obj

    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if endpoint == "openai":
            message.update(refusal=None, annotations=[])
        elif answer.content is None:
            message["content"] = ""
        if answer.reasoning:
            message["reasoning_content"] = answer.reasoning
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    **({"index": i} if endpoint != "openai" else {}),
                    "id": cid,
                    "type": "function",
                    "function": {"name": n, "arguments": a},
                }
                for i, (cid, n, a) in enumerate(answer.tool_calls)
            ]
        choice0 = {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
        return json_response(200, envelope([choice0], usage, with_usage=True), OPENAI_JSON)

    def chunk(choices: list[dict[str, Any]], usage_value: dict[str, Any] | None = None) -> bytes:
        return sse_event(envelope(choices, usage_value, with_usage=include_usage))

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    chunks: list[bytes] = []
    head: dict[str, Any] = {"role": "assistant", "content": None if answer.reasoning else ""}
    if endpoint == "openai":
        head["refusal"] = None
    if answer.reasoning:
        head["reasoning_content"] = ""
        chunks.append(chunk(choice(head)))
        for piece in emu.tokenizer.split_chunks(answer.reasoning, emu.stream_tokens_per_chunk):
            chunks.append(chunk(choice({"content": None, "reasoning_content": piece})))
        head = {}
    if answer.tool_calls:
        for i, (cid, n, a) in enumerate(answer.tool_calls):
            call: dict[str, Any] = {
                "tool_calls": [{"index": i, "id": cid, "type": "function", "function": {"name": n, "arguments": ""}}]
            }
            if head:
                call = {**head, "content": None, **call}
                head = {}
            chunks.append(chunk(choice(call)))
            half = len(a) // 2
            for frag in (a[:half], a[half:]):
                if frag:
                    chunks.append(chunk(choice({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})))
    else:
        if head:
            chunks.append(chunk(choice(head)))
        for piece in emu.tokenizer.split_chunks(answer.content or "", emu.stream_tokens_per_chunk):
            chunks.append(chunk(choice({"content": piece})))
    finish_delta: dict[str, Any] = {"content": ""} if endpoint != "openai" else {}
    if endpoint == "deepseek":
        chunks.append(chunk(choice(finish_delta, answer.finish_reason), usage))
    else:
        chunks.append(chunk(choice(finish_delta, answer.finish_reason)))
        if include_usage:
            chunks.append(chunk([], usage))
    chunks.append(sse_event("[DONE]"))
    return sse_response(chunks, OPENAI_SSE)


def handle_openai_models(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    """``GET /v1/models``: a minimal list so clients that probe models work."""
    if bearer(ctx.headers) is None:
        return openai_error(401, OPENAI_NO_AUTH)
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "cache-integrations-emulator"}
        for m in emu.openai_models
    ]
    return json_response(200, {"object": "list", "data": data}, OPENAI_JSON)
