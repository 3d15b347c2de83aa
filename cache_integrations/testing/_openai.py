"""OpenAI-compatible chat completions: response bodies, SSE chunks, errors and ``GET /v1/models``.

A stream carries usage only when the request sets ``stream_options.include_usage``: then every chunk
has ``"usage": null`` and one extra ``choices: []`` chunk carries it (OpenAI's documented behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import RequestContext
from ._http import EmulatorResponse, json_response, sse_event, sse_response
from ._synth import digest, encode

if TYPE_CHECKING:
    from ._chat import Answer
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


def openai_usage(prompt: int, cached: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_response(
    emu: Emulator,
    ctx: RequestContext,
    model: str,
    answer: Answer,
    prompt: int,
    cached: int,
    stream: bool,
    include_usage: bool,
) -> EmulatorResponse:
    rid = "chatcmpl-" + encode(
        digest("openai-id", emu.seed, ctx.seq), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 29
    )
    fingerprint = "fp_" + digest("fingerprint", model).hex()[:10]
    created = int(ctx.now)
    usage = openai_usage(prompt, cached, answer.completion_tokens)
    if not stream or include_usage:
        ctx.usage = usage
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None, "annotations": []}
        if answer.tool_calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": n, "arguments": a}}
                for cid, n, a in answer.tool_calls
            ]
        payload = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
        }
        return json_response(200, payload, OPENAI_JSON)

    def chunk(choices: list[dict[str, Any]], usage_value: dict[str, Any] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
            "choices": choices,
        }
        if include_usage:
            obj["usage"] = usage_value
        return sse_event(obj)

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    chunks: list[bytes] = []
    if answer.tool_calls:
        first = True
        for i, (cid, n, a) in enumerate(answer.tool_calls):
            head: dict[str, Any] = {
                "tool_calls": [{"index": i, "id": cid, "type": "function", "function": {"name": n, "arguments": ""}}]
            }
            if first:
                head = {"role": "assistant", "content": None, **head, "refusal": None}
                first = False
            chunks.append(chunk(choice(head)))
            half = len(a) // 2
            for frag in (a[:half], a[half:]):
                if frag:
                    chunks.append(chunk(choice({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})))
    else:
        chunks.append(chunk(choice({"role": "assistant", "content": "", "refusal": None})))
        for piece in emu.tokenizer.split_chunks(answer.content or "", emu.stream_tokens_per_chunk):
            chunks.append(chunk(choice({"content": piece})))
    chunks.append(chunk(choice({}, answer.finish_reason)))
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
