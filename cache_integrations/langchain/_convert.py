"""Conversions between LangChain's message types and the neutral core model.

Nothing is dropped silently: a message or content block the core cannot represent raises
`InvalidRequestError` naming its index and type. `cache_control` markers (on a content block, in a
block's ``extras`` or in ``additional_kwargs``) become cache points.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.utils.function_calling import convert_to_openai_tool

from .._memo import Memo, Unfreezable, freeze, register
from ..errors import InvalidRequestError
from ..layout import canonical_json
from ..messages import (
    ChatResponse,
    Message,
    Part,
    Role,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolDefinition,
)
from ..usage import Usage, as_mapping, usage_from_openai, with_cache_booking
from ._media import MEDIA_BLOCKS, media_from_block

__all__ = [
    "USAGE_UNKNOWN_KEY",
    "ai_message_from_response",
    "message_chunk_from_stream",
    "messages_from_langchain",
    "tool_from_langchain",
    "usage_from_langchain",
    "usage_to_langchain",
]

_CHAT_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "tool": "tool",
}
# Blocks that duplicate what an AIMessage already carries in `tool_calls`.
_TOOL_CALL_BLOCKS = frozenset(("tool_use", "tool_call", "tool_call_chunk", "function_call"))
_SUPPORTED_BLOCKS = (
    "text; image, audio, video, file (url, base64 or file_id), text-plain; image_url, input_audio, media"
)


def _has_cache_control(block: Mapping[str, Any]) -> bool:
    extras = block.get("extras")
    return "cache_control" in block or (isinstance(extras, Mapping) and "cache_control" in extras)


def _content(
    content: str | list[str | dict[str, Any]], where: str, role: Role
) -> tuple[str | tuple[Part, ...], bool, str | None]:
    """Returns (content, has_cache_point, reasoning text found in reasoning blocks)."""
    if isinstance(content, str):
        return content, False, None
    parts: list[Part] = []
    cache_point = False
    reasoning: list[str] = []
    for j, block in enumerate(content):
        if isinstance(block, str):
            parts.append(TextPart(block))
            continue
        if not isinstance(block, Mapping):
            raise InvalidRequestError(
                f"{where}.content[{j}]: expected a str or a dict block, got {type(block).__name__}"
            )
        kind = block.get("type")
        cache_point = cache_point or _has_cache_control(block)
        if kind == "text":
            parts.append(TextPart(str(block.get("text", ""))))
        elif kind in MEDIA_BLOCKS:
            parts.append(media_from_block(block, f"{where}.content[{j}]"))
        elif role == "assistant" and kind in _TOOL_CALL_BLOCKS:
            continue
        elif role == "tool" and kind == "tool_result":
            # Anthropic's own shape of a tool answer (a ToolMessage holding its tool_result block): its content.
            inner, inner_point, _ = _content(block.get("content") or "", f"{where}.content[{j}].content", role)
            cache_point = cache_point or inner_point
            parts.extend((TextPart(inner),) if isinstance(inner, str) else inner)
        elif role == "assistant" and kind in ("reasoning", "thinking"):
            reasoning.append(str(block.get("reasoning") or block.get("thinking") or ""))
        else:
            raise InvalidRequestError(
                f"{where}.content[{j}]: content block type {kind!r} is not supported in a {role} message; "
                f"supported: {_SUPPORTED_BLOCKS}"
            )
    if all(isinstance(p, TextPart) for p in parts) and role != "user":
        # System, assistant and tool turns are plain text on the wire; keep them as one string.
        return "".join(p.text for p in parts if isinstance(p, TextPart)), cache_point, "".join(reasoning) or None
    return tuple(parts), cache_point, "".join(reasoning) or None


def _role_of(message: BaseMessage, where: str) -> Role:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, ChatMessage):
        role = _CHAT_ROLES.get(message.role)
        if role is None:
            raise InvalidRequestError(f"{where}: unknown role {message.role!r}; allowed roles: {sorted(_CHAT_ROLES)}")
        return role
    raise InvalidRequestError(
        f"{where}: unsupported message type {type(message).__name__}; use SystemMessage, HumanMessage, "
        "AIMessage, ToolMessage or ChatMessage"
    )


def _message(m: BaseMessage, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(m, BaseMessage):
        raise InvalidRequestError(f"{where}: expected a LangChain BaseMessage, got {type(m).__name__}")
    role = _role_of(m, where)
    content, cache_point, block_reasoning = _content(m.content, where, role)
    cache_point = cache_point or "cache_control" in m.additional_kwargs
    if role == "assistant":
        reasoning = m.additional_kwargs.get("reasoning_content") or block_reasoning
        calls = _tool_calls_from_ai(m) if isinstance(m, AIMessage) else ()
        return Message("assistant", content, tool_calls=calls, reasoning=reasoning, cache_point=cache_point)
    if role == "tool":
        tool_call_id = getattr(m, "tool_call_id", None)
        if not tool_call_id:
            raise InvalidRequestError(f"{where}: a tool message needs the tool_call_id it answers")
        return Message("tool", content, tool_call_id=tool_call_id, cache_point=cache_point)
    name = m.name if role == "user" else None
    return Message(role, content, name=name, cache_point=cache_point)


# Converted messages by what the conversion reads (class, role, content, name, additional_kwargs, tool calls),
# so a history converts each distinct message once, whether the caller keeps its message objects or rebuilds
# them (a checkpointer's deserialized state): a message changed in place has a new key.
_CONVERTED: Memo[Hashable, Message] = Memo("LangChain messages", max_entries=100_000, max_weight=32 * 1024 * 1024)
register(_CONVERTED)


def _key(m: BaseMessage) -> Hashable | None:
    """What the conversion of `m` depends on, as a key; None when some of it cannot be one."""
    try:
        extra = freeze(m.additional_kwargs) if m.additional_kwargs else None
        content = m.content if type(m.content) is str else freeze(m.content)
        if isinstance(m, AIMessage):
            calls = freeze(m.tool_calls) if m.tool_calls else None
            invalid = freeze(m.invalid_tool_calls) if m.invalid_tool_calls else None
            return (AIMessage, type(m), content, extra, calls, invalid)
        if isinstance(m, ToolMessage):
            return (ToolMessage, type(m), content, extra, m.tool_call_id)
        role = m.role if isinstance(m, ChatMessage) else None
        return (type(m), role, content, extra, m.name)
    except Unfreezable:
        return None


def _weight(message: Message) -> int:
    content = message.content
    return 128 + (len(content) if isinstance(content, str) else 64 * len(content))


def messages_from_langchain(messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
    """LangChain messages to neutral messages, in order; raises on anything it cannot carry.

    Each distinct message is converted once (memoized by its content) and the same neutral `Message`
    returned afterwards, so the core's per-message memos hit too.
    """
    if not messages:
        raise InvalidRequestError("messages: at least one message is required, got an empty list")
    keys = [_key(m) if isinstance(m, BaseMessage) else None for m in messages]
    found: list[Message | None] = _CONVERTED.get_many(keys)  # a None key is never stored: a miss
    new: list[tuple[Hashable, Message, int]] = []
    for i, message in enumerate(found):
        if message is None:
            message = found[i] = _message(messages[i], i)
            if (key := keys[i]) is not None:
                new.append((key, message, _weight(message)))
    if new:
        _CONVERTED.put_many(new)
    return tuple(found)  # type: ignore[arg-type]  # every None was replaced


USAGE_UNKNOWN_KEY = "usage_unknown"
"""`response_metadata` key set (True) when the provider reported no valid usage: the message then has
no `usage_metadata`, and the cache usage handler counts the call with its usage unknown."""

SIGNATURES_KEY = "tool_call_signatures"
"""`additional_kwargs` key mapping tool-call ids to provider signatures (Gemini's thoughtSignature)."""


def _tool_calls_from_ai(m: AIMessage) -> tuple[ToolCall, ...]:
    signatures = m.additional_kwargs.get(SIGNATURES_KEY) or {}
    # The arguments are copied: the neutral message is remembered, and the caller may change its own dict later.
    calls = [
        ToolCall(
            tc.get("id") or "", tc["name"], copy.deepcopy(tc.get("args") or {}), signature=signatures.get(tc.get("id"))
        )
        for tc in m.tool_calls
    ]
    # Invalid calls are part of the conversation the model saw: replay them as they were.
    calls.extend(
        ToolCall(
            tc.get("id") or "",
            tc.get("name") or "",
            {},
            tc.get("args") or "",
            tc.get("error") or "invalid",
            signatures.get(tc.get("id")),
        )
        for tc in m.invalid_tool_calls
    )
    return tuple(calls)


def tool_from_langchain(tool: Any) -> ToolDefinition:
    """Any tool LangChain can describe (BaseTool, pydantic model, function, dict) to a definition."""
    try:
        spec = convert_to_openai_tool(tool)
    except Exception as exc:
        raise InvalidRequestError(f"tools: cannot convert {tool!r:.80} to a tool definition: {exc}") from exc
    fn = spec.get("function")
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise InvalidRequestError(f"tools: {tool!r:.80} is not a function tool; only function tools are supported")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    canonical_json(params, what=f"tools[{fn['name']!r}].parameters")
    return ToolDefinition(fn["name"], fn.get("description") or "", params, fn.get("strict"))


def usage_to_langchain(usage: Usage | None) -> UsageMetadata | None:
    """LangChain's `usage_metadata`; None (the message carries none) when the usage is unknown."""
    if usage is None:
        return None
    details = InputTokenDetails(cache_read=usage.cache_read_tokens)
    if usage.cache_write_tokens:
        details["cache_creation"] = usage.cache_write_tokens
    meta = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_token_details=details,
    )
    if usage.reasoning_tokens:
        meta["output_token_details"] = OutputTokenDetails(reasoning=usage.reasoning_tokens)
    return meta


_WRITE_KEYS = ("cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def usage_from_langchain(meta: Mapping[str, Any], response_metadata: Mapping[str, Any] | None = None) -> Usage:
    """Read any LangChain model's `usage_metadata` (so the handler works for every chat model).

    Explicit-cache storage and writes booked by the call travel in ``response_metadata["cache"]``. Anthropic's
    writes arrive split by TTL (``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``), with
    ``cache_creation`` then set to 0 by langchain-anthropic: all three are writes. Cache counts a model left out
    of `usage_metadata` are taken from the provider's raw usage when the model kept it
    (``response_metadata["token_usage"]``, as ChatOpenAI does for whole answers): ChatOpenAI pointed at DeepSeek
    or DashScope maps only ``prompt_tokens_details.cached_tokens`` / ``cache_write_tokens``, so DeepSeek's
    ``prompt_cache_hit_tokens`` and DashScope's ``cache_creation_input_tokens`` would be lost.
    """
    inp = meta.get("input_token_details") or {}
    out = meta.get("output_token_details") or {}
    read = int(inp.get("cache_read") or 0)
    written = sum(int(inp.get(k) or 0) for k in _WRITE_KEYS)
    raw = as_mapping((response_metadata or {}).get("token_usage"))
    reported = usage_from_openai(raw) if raw is not None and not (read and written) else None
    if reported is not None and "prompt_tokens" in (raw or {}):
        read = read or reported.cache_read_tokens
        written = written or reported.cache_write_tokens
    usage = Usage(
        input_tokens=int(meta.get("input_tokens") or 0),
        cache_read_tokens=read,
        cache_write_tokens=written,
        output_tokens=int(meta.get("output_tokens") or 0),
        reasoning_tokens=int(out.get("reasoning") or 0),
    )
    return with_cache_booking(usage, (response_metadata or {}).get("cache"))


def _response_metadata(
    model: str | None,
    provider: str,
    finish_reason: str | None,
    rid: str | None,
    fingerprint: str | None,
    cache: Any = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"model_name": model or "", "model_provider": provider}
    if usage is None:
        meta[USAGE_UNKNOWN_KEY] = True  # no usage_metadata: the handlers count the call as usage unknown
    if finish_reason:
        meta["finish_reason"] = finish_reason
    if rid:
        meta["id"] = rid
    if fingerprint:
        meta["prefix_fingerprint"] = fingerprint
    if cache is not None:
        meta["cache"] = cache.as_dict()  # name, tokens, expiry, created/extended/recovered, storage
    return meta


def ai_message_from_response(response: ChatResponse, provider: str) -> AIMessage:
    calls = []
    invalid = []
    for tc in response.message.tool_calls:
        if tc.error:
            invalid.append(invalid_tool_call(name=tc.name, args=tc.raw_arguments, id=tc.id, error=tc.error))
        else:
            calls.append(tool_call(name=tc.name, args=dict(tc.arguments), id=tc.id))
    extra: dict[str, Any] = {"reasoning_content": response.message.reasoning} if response.message.reasoning else {}
    if signatures := {tc.id: tc.signature for tc in response.message.tool_calls if tc.signature}:
        extra[SIGNATURES_KEY] = signatures
    return AIMessage(
        content=response.message.text,
        additional_kwargs=extra,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_to_langchain(response.usage),
        response_metadata=_response_metadata(
            response.model,
            provider,
            response.finish_reason,
            response.id,
            response.prefix_fingerprint,
            response.cache,
            response.usage,
        ),
    )


def message_chunk_from_stream(chunk: StreamChunk, provider: str) -> AIMessageChunk:
    """A content delta, or (for the final chunk) the one chunk that carries usage and metadata."""
    if chunk.final:
        return AIMessageChunk(
            content="",
            usage_metadata=usage_to_langchain(chunk.usage),
            response_metadata=_response_metadata(
                chunk.model, provider, chunk.finish_reason, chunk.id, chunk.prefix_fingerprint, chunk.cache, chunk.usage
            ),
            chunk_position="last",
        )
    extra: dict[str, Any] = {"reasoning_content": chunk.reasoning} if chunk.reasoning else {}
    if signatures := {tc.id: tc.signature for tc in chunk.tool_call_chunks if tc.signature and tc.id}:
        extra[SIGNATURES_KEY] = signatures
    return AIMessageChunk(
        content=chunk.text,
        additional_kwargs=extra,
        tool_call_chunks=[
            tool_call_chunk(name=tc.name, args=tc.arguments, id=tc.id, index=tc.index) for tc in chunk.tool_call_chunks
        ],
    )
