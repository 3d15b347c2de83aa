"""Zhipu GLM and OpenAI-compatible chat completions: validation, the scripted answer, GLM's wire format.

GLM streams carry usage on the finish_reason chunk (or, with ``glm_usage_chunk="separate"``, on an
extra ``choices: []`` chunk), and only when the request asks with ``stream_options.include_usage``
unless ``Emulator.glm_stream_usage == "always"``. The OpenAI flavour's bodies are in ``_openai``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._chat_cache import CacheParamError, serve_chat_cache
from ._context import RequestContext
from ._http import EmulatorResponse, json_response, sse_event, sse_response
from ._openai import OPENAI_NO_AUTH, bearer, openai_error, openai_response
from ._render import render_chat, render_chat_content
from ._strict import unknown_dashscope_model, unknown_deepseek_model, unknown_glm_model, unknown_openai_model
from ._synth import (
    ArgumentSynthesizer,
    digest,
    encode,
    glm_tool_call_id,
    json_answer,
    openai_tool_call_id,
    pick_tool,
    reasoning_text,
    reply_text,
    tool_result_text,
)

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["Answer", "glm_error", "handle_chat"]

Flavor = Literal["glm", "openai"]

GLM_JSON = "application/json; charset=UTF-8"
GLM_SSE = "text/event-stream;charset=UTF-8"

GLM_ROLES = ("system", "user", "assistant", "tool")
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
GLM_MESSAGES_ILLEGAL = "The messages parameter is illegal. Please check the documentation."
GLM_INVALID_PARAMETER = "Invalid API parameter, please check the documentation."
# Zhipu's 1000-series authentication codes (https://docs.z.ai/api-reference/api-code, read 2026-11-30):
# 1000 "Authentication Failed" is what api.z.ai answers a wrong key with (HTTP 401, as quoted in
# continuedev/continue#12648, 2026-06-16); 1001 a request without the header (accomplish-ai/coworker#678).
GLM_NO_AUTH = "Authentication parameter not received in Header, unable to authenticate"
GLM_BAD_AUTH = "Authentication Failed"
_THINKING_BY_DEFAULT = re.compile(r"^glm-(4\.7|5)")


class _Reject(Exception):
    def __init__(self, response: EmulatorResponse) -> None:
        super().__init__(response.status)
        self.response = response


def glm_error(status: int, code: str, message: str) -> EmulatorResponse:
    return json_response(status, {"error": {"code": code, "message": message}}, GLM_JSON)


def _bad(
    flavor: Flavor, message: str, *, param: str | None = None, code: str | None = None, glm_code: str = "1214"
) -> _Reject:
    if flavor == "glm":
        return _Reject(glm_error(400, glm_code, message))
    return _Reject(openai_error(400, message, param=param, code=code))


@dataclass
class Answer:
    reasoning: str = ""
    content: str | None = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    finish_reason: str = "stop"
    reasoning_tokens: int = 0
    completion_tokens: int = 0


def _validate(body: Mapping[str, Any], flavor: Flavor) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        if flavor == "glm":
            raise _bad(flavor, "The model parameter is illegal: a model name is required.")
        raise _Reject(openai_error(400, "you must provide a model parameter"))
    if "messages" not in body:
        raise _bad(
            flavor,
            GLM_MESSAGES_ILLEGAL if flavor == "glm" else "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad(
            flavor,
            GLM_MESSAGES_ILLEGAL
            if flavor == "glm"
            else "Invalid 'messages': empty array. Expected an array "
            "with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    roles = GLM_ROLES if flavor == "glm" else OPENAI_ROLES
    pending: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise _bad(
                flavor,
                f"{GLM_MESSAGES_ILLEGAL} (messages[{i}] is not an object)"
                if flavor == "glm"
                else f"Invalid type for 'messages[{i}]': expected an object.",
                param=f"messages[{i}]",
                code="invalid_type",
            )
        role = msg.get("role")
        if role not in roles:
            if flavor == "glm":
                raise _bad(
                    flavor, f"{GLM_MESSAGES_ILLEGAL} (messages[{i}].role {role!r} must be one of {', '.join(roles)})"
                )
            supported = ", ".join(f"'{r}'" for r in roles[:-1]) + f", and '{roles[-1]}'"
            raise _bad(
                flavor,
                f"Invalid value: {role!r}. Supported values are: {supported}.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if role == "tool" and not msg.get("tool_call_id"):
            if flavor == "glm":
                raise _bad(flavor, f"{GLM_MESSAGES_ILLEGAL} (messages[{i}].tool_call_id is required for tool messages)")
            raise _bad(
                flavor,
                "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
                param=f"messages[{i}].tool_call_id",
                code="missing_required_parameter",
            )
        if flavor == "openai":
            if role == "tool":
                call_id = str(msg.get("tool_call_id"))
                if call_id not in pending:
                    raise _bad(
                        flavor,
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                        param=f"messages.[{i}].role",
                    )
                pending.remove(call_id)
            elif pending:
                raise _bad(
                    flavor,
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not have response "
                    f"messages: {', '.join(pending)}",
                    param=f"messages.[{i - 1}].role",
                )
            if role == "assistant":
                pending = [str(c.get("id")) for c in msg.get("tool_calls") or [] if isinstance(c, Mapping)]
    if flavor == "openai" and pending:
        raise _bad(
            flavor,
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
            param=f"messages.[{len(messages) - 1}].role",
        )
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad(
                flavor,
                GLM_INVALID_PARAMETER if flavor == "glm" else "Invalid type for 'stop'.",
                param="stop",
                code="invalid_type",
                glm_code="1210",
            )
        limit = 1 if flavor == "glm" else 4
        if len(stops) > limit:
            raise _bad(
                flavor,
                GLM_INVALID_PARAMETER
                if flavor == "glm"
                else "Invalid 'stop': array too long. "
                f"Expected an array with maximum length 4, but got an array with length {len(stops)} "
                "instead.",
                param="stop",
                code="array_above_max_length",
                glm_code="1210",
            )
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise _bad(
                flavor,
                GLM_INVALID_PARAMETER
                if flavor == "glm"
                else f"Invalid '{key}': integer below minimum value. Expected a value >= 1.",
                param=key,
                code="integer_below_min_value",
                glm_code="1210",
            )
    tools = body.get("tools")
    if tools is not None:
        ok = isinstance(tools, list) and all(
            isinstance(t, Mapping) and isinstance(t.get("function"), Mapping) and t["function"].get("name")
            for t in tools
        )
        if not ok:
            raise _bad(
                flavor,
                "The tools parameter is illegal: every tool needs a function with a name."
                if flavor == "glm"
                else "Missing required parameter: 'tools[0].function.name'.",
                param="tools",
                code="missing_required_parameter",
            )
    thinking = body.get("thinking")
    if (
        flavor == "glm"
        and thinking is not None
        and (not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "disabled"))
    ):
        raise _bad(flavor, GLM_INVALID_PARAMETER, glm_code="1210")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, Mapping)
        or response_format.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise _bad(
            flavor,
            GLM_INVALID_PARAMETER if flavor == "glm" else "Invalid 'response_format'.",
            param="response_format",
            code="invalid_value",
            glm_code="1210",
        )


def glm_thinking(body: Mapping[str, Any]) -> bool:
    """Whether GLM emits reasoning: explicit ``thinking.type``, else on for glm-4.7 and glm-5*."""
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping):
        return thinking.get("type") == "enabled"
    if body.get("reasoning_effort"):
        return True
    return bool(_THINKING_BY_DEFAULT.match(str(body.get("model", "")).lower()))


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, Mapping) and msg.get("role") == "user":
            return render_chat_content(msg.get("content"))
    return ""


def _tool_name_for(messages: list[Any], call_id: str) -> str:
    for msg in reversed(messages):
        if isinstance(msg, Mapping) and msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or []:
                if isinstance(call, Mapping) and str(call.get("id")) == call_id:
                    fn = call.get("function")
                    return str(fn.get("name", "")) if isinstance(fn, Mapping) else ""
    return ""


def _compose(emu: Emulator, body: Mapping[str, Any], flavor: Flavor, thinking: bool, seq: int) -> Answer:
    tok = emu.tokenizer
    messages: list[Any] = body["messages"]
    last = messages[-1]
    user_text = _last_user_text(messages)
    tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or []}
    names = list(tools)
    choice = body.get("tool_choice", "auto")
    forced: str | None = None
    if isinstance(choice, Mapping):
        fn = choice.get("function")
        forced = str(fn.get("name")) if isinstance(fn, Mapping) and fn.get("name") in tools else None
    want_call = (
        bool(names) and choice != "none" and (forced is not None or choice == "required" or last.get("role") == "user")
    )
    answer = Answer()
    tool_name: str | None = None
    if want_call:
        tool_name = forced or pick_tool(names, user_text)
        args = ArgumentSynthesizer(user_text, exclude=names).build(tools[tool_name].get("parameters") or {})
        arguments = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        make_id = glm_tool_call_id if flavor == "glm" else openai_tool_call_id
        answer.tool_calls = [(make_id(emu.seed, seq, 0), tool_name, arguments)]
        answer.content = f"I'll use the {tool_name} tool." if flavor == "glm" else None
        answer.finish_reason = "tool_calls"
    elif last.get("role") == "tool":
        result = render_chat_content(last.get("content"))
        answer.content = tool_result_text(_tool_name_for(messages, str(last.get("tool_call_id"))), result)
    else:
        answer.content = reply_text(user_text)
    response_format = body.get("response_format")
    if not want_call and isinstance(response_format, Mapping) and response_format.get("type") != "text":
        schema = None
        spec = response_format.get("json_schema")
        if isinstance(spec, Mapping):
            schema = spec.get("schema")
        answer.content = json_answer(schema, user_text, answer.content or "")
    if thinking:
        answer.reasoning = reasoning_text(user_text, tool_name)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if answer.content:
        cuts = [answer.content.find(s) for s in stops if s and s in answer.content]
        if cuts:
            answer.content = answer.content[: min(cuts)]
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    reasoning_tokens = tok.count(answer.reasoning)
    if isinstance(budget, int) and budget > 0:
        if reasoning_tokens >= budget:
            answer.reasoning = tok.truncate(answer.reasoning, budget)
            reasoning_tokens = tok.count(answer.reasoning)
            answer.content, answer.tool_calls, answer.finish_reason = ("", [], "length")
        else:
            left = budget - reasoning_tokens
            call_tokens = sum(tok.count(n) + tok.count(a) for _, n, a in answer.tool_calls)
            if call_tokens > left:
                answer.content, answer.tool_calls, answer.finish_reason = ("", [], "length")
            else:
                left -= call_tokens
                if answer.content and tok.count(answer.content) > left:
                    answer.content = tok.truncate(answer.content, left)
                    answer.finish_reason = "length"
    answer.reasoning_tokens = reasoning_tokens
    answer.completion_tokens = (
        reasoning_tokens
        + tok.count(answer.content or "")
        + sum(tok.count(n) + tok.count(a) for _, n, a in answer.tool_calls)
    )
    return answer


def handle_chat(emu: Emulator, ctx: RequestContext, flavor: Flavor) -> EmulatorResponse:
    """``POST .../chat/completions`` for both flavours."""
    key = bearer(ctx.headers)
    if key is None:
        if flavor == "glm":
            return glm_error(401, "1001", GLM_NO_AUTH)
        return openai_error(401, OPENAI_NO_AUTH)
    if emu.api_keys is not None and key not in emu.api_keys:
        if flavor == "glm":
            return glm_error(401, "1000", GLM_BAD_AUTH)
        shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "*" * len(key)
        return openai_error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    try:
        body = json.loads(ctx.body or b"null")
    except ValueError:
        if flavor == "openai":
            return openai_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
                "valid JSON.)",
            )
        return glm_error(400, "1210", GLM_INVALID_PARAMETER)
    ctx.parsed = body
    if not isinstance(body, dict):
        return (
            glm_error(400, "1210", GLM_INVALID_PARAMETER)
            if flavor == "glm"
            else openai_error(400, "The request body must be a JSON object.")
        )
    try:
        _validate(body, flavor)
    except _Reject as reject:
        return reject.response
    model = str(body["model"])
    ctx.model = model
    endpoint = "glm" if flavor == "glm" else ctx.endpoint
    if endpoint not in ("glm", "openai", "deepseek", "dashscope"):
        endpoint = "openai"
    if not emu.is_known_model(endpoint, model):
        if endpoint == "deepseek":
            return unknown_deepseek_model()
        if endpoint == "dashscope":
            return unknown_dashscope_model(model)
        return unknown_glm_model() if flavor == "glm" else unknown_openai_model(model)
    thinking = glm_thinking(body) if flavor == "glm" else endpoint == "deepseek" and "reasoner" in model
    preserve = False
    if flavor == "glm":
        cfg = body.get("thinking")
        clear = cfg.get("clear_thinking") if isinstance(cfg, Mapping) else None
        preserve = (clear is False) or (clear is None and "/coding/" in ctx.path)
    segments = render_chat(body, preserve_thinking=preserve)
    prompt_tokens = emu.tokenizer.count_all(segments)
    try:
        cache = serve_chat_cache(emu, ctx, endpoint, key, model, body, segments, prompt_tokens)
    except CacheParamError as error:
        return openai_error(400, error.message, param=error.param, code=error.code)
    answer = _compose(emu, body, flavor, thinking, ctx.seq)
    implicit, explicit = (0, cache.cached) if cache.explicit else (cache.cached, 0)
    emu._record_usage(endpoint, prompt_tokens, implicit, answer.completion_tokens, explicit=explicit)
    if cache.written:
        emu._record_writes(endpoint, cache.written)
    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    if flavor == "glm":
        include_usage = include_usage or emu.glm_stream_usage == "always"
        return _glm_response(emu, ctx, model, answer, prompt_tokens, cache.cached, thinking, stream, include_usage)
    return openai_response(emu, ctx, endpoint, model, answer, prompt_tokens, cache, stream, include_usage)


# ----------------------------------------------------------------------------------------------- GLM


def _glm_usage(emu: Emulator, prompt: int, cached: int, answer: Answer, thinking: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": prompt + answer.completion_tokens,
    }
    if emu.glm_prompt_tokens_details:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thinking:
        usage["completion_tokens_details"] = {"reasoning_tokens": answer.reasoning_tokens}
    return usage


def _glm_response(
    emu: Emulator,
    ctx: RequestContext,
    model: str,
    answer: Answer,
    prompt: int,
    cached: int,
    thinking: bool,
    stream: bool,
    include_usage: bool,
) -> EmulatorResponse:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(ctx.now))
    rid = stamp + encode(digest("glm-id", emu.seed, ctx.seq), "0123456789abcdef", 16)
    client_id = ctx.parsed.get("request_id") if isinstance(ctx.parsed, Mapping) else None
    if isinstance(client_id, str) and client_id:
        rid = client_id  # GLM echoes a caller-chosen request_id as both id and request_id
    created = int(ctx.now)
    usage = _glm_usage(emu, prompt, cached, answer, thinking)
    if not stream or include_usage:
        ctx.usage = usage
    if not stream:
        message: dict[str, Any] = {"content": answer.content or ""}
        if thinking:
            message["reasoning_content"] = answer.reasoning
        message["role"] = "assistant"
        if answer.tool_calls:
            message["tool_calls"] = [
                {"function": {"arguments": a, "name": n}, "id": cid, "index": i, "type": "function"}
                for i, (cid, n, a) in enumerate(answer.tool_calls)
            ]
        payload = {
            "choices": [{"finish_reason": answer.finish_reason, "index": 0, "message": message}],
            "created": created,
            "id": rid,
            "model": model,
            "object": "chat.completion",
            "request_id": rid,
            "usage": usage,
        }
        return json_response(200, payload, GLM_JSON)

    def chunk(delta: dict[str, Any]) -> bytes:
        return sse_event(
            {
                "id": rid,
                "created": created,
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": delta}],
            }
        )

    per = emu.stream_tokens_per_chunk
    chunks = [
        chunk({"role": "assistant", "reasoning_content": p}) for p in emu.tokenizer.split_chunks(answer.reasoning, per)
    ]
    chunks += [
        chunk({"role": "assistant", "content": p}) for p in emu.tokenizer.split_chunks(answer.content or "", per)
    ]
    for i, (cid, n, a) in enumerate(answer.tool_calls):
        chunks.append(
            chunk(
                {"tool_calls": [{"id": cid, "index": i, "type": "function", "function": {"name": n, "arguments": a}}]}
            )
        )
    final: dict[str, Any] = {
        "id": rid,
        "created": created,
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "finish_reason": answer.finish_reason, "delta": {"role": "assistant", "content": ""}}],
    }
    if not include_usage:
        chunks.append(sse_event(final))  # a client that did not ask for usage gets none
    elif emu.glm_usage_chunk == "separate":
        chunks.append(sse_event(final))
        chunks.append(
            sse_event(
                {
                    "id": rid,
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                    "object": "chat.completion.chunk",
                }
            )
        )
    else:
        final["usage"] = usage
        chunks.append(sse_event(final))
    chunks.append(sse_event("[DONE]"))
    return sse_response(chunks, GLM_SSE)
