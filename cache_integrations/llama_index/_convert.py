"""Conversions between LlamaIndex's chat types and the neutral core model.

Nothing is dropped silently: a role or content block the core cannot represent raises
`InvalidRequestError` naming the message index and the block type. `CachePoint` blocks and
``additional_kwargs["cache_control"]`` become cache points on their message (cache points are
message-granular in the core). The caller's messages are only read, never modified.

Usage is exposed the way LlamaIndex consumers look for it: one normalized dict (OpenAI key names
plus the Anthropic-style cache keys) in ``ChatResponse.raw["usage"]`` and, identical, in
``ChatResponse.additional_kwargs``; never in ``message.additional_kwargs``, which memories store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.base.llms.types import ChatResponse as LIChatResponse

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
    ToolCallChunk,
    ToolDefinition,
)
from ..providers.glm import tool_call_from_wire
from ..usage import Usage
from ._media import MEDIA_BLOCK_TYPES, media_from_block

__all__ = [
    "SIGNATURES_KEY",
    "StreamAccumulator",
    "chat_response_from_core",
    "messages_from_llama_index",
    "parse_tool_kwargs",
    "raw_from_core",
    "tool_from_llama_index",
    "usage_to_llama_index",
]

SIGNATURES_KEY = "tool_call_signatures"
"""`message.additional_kwargs` key mapping tool-call ids to provider signatures (Gemini's thoughtSignature)."""

_ROLES: dict[str, Role] = {
    MessageRole.SYSTEM.value: "system",
    MessageRole.DEVELOPER.value: "system",
    MessageRole.USER.value: "user",
    MessageRole.ASSISTANT.value: "assistant",
    MessageRole.CHATBOT.value: "assistant",
    MessageRole.MODEL.value: "assistant",
    MessageRole.TOOL.value: "tool",
    MessageRole.FUNCTION.value: "tool",
}
_SUPPORTED_BLOCKS = (
    "TextBlock, ImageBlock, DocumentBlock, AudioBlock, VideoBlock, CachePoint (any role); "
    "ToolCallBlock, ThinkingBlock (assistant)"
)


# -- LlamaIndex -> core -----------------------------------------------------------------------------


def _legacy_tool_calls(raw_calls: Any, where: str) -> list[ToolCall]:
    """``additional_kwargs["tool_calls"]`` in OpenAI's shape (dicts or SDK objects)."""
    if not isinstance(raw_calls, Iterable) or isinstance(raw_calls, (str, bytes, Mapping)):
        raise InvalidRequestError(f"{where}.additional_kwargs['tool_calls']: expected a list of tool calls")
    calls = []
    for j, raw in enumerate(raw_calls):
        get = raw.get if isinstance(raw, Mapping) else (lambda key, obj=raw: getattr(obj, key, None))
        fn = get("function")
        fget = fn.get if isinstance(fn, Mapping) else (lambda key, obj=fn: getattr(obj, key, None))
        name = fget("name") if fn is not None else None
        if not name:
            raise InvalidRequestError(f"{where}.additional_kwargs['tool_calls'][{j}]: a tool call needs function.name")
        calls.append(tool_call_from_wire(str(get("id") or ""), str(name), fget("arguments")))
    return calls


def _message(message: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(message, ChatMessage):
        raise InvalidRequestError(f"{where}: expected a llama_index ChatMessage, got {type(message).__name__}")
    role_value = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    role = _ROLES.get(role_value)
    if role is None:
        raise InvalidRequestError(f"{where}: unknown role {role_value!r}; allowed roles: {sorted(_ROLES)}")
    kwargs = message.additional_kwargs or {}
    signatures = kwargs.get(SIGNATURES_KEY) or {}
    parts: list[Part] = []
    calls: list[ToolCall] = []
    reasoning: list[str] = []
    cache_point = "cache_control" in kwargs
    for j, block in enumerate(message.blocks):
        if isinstance(block, TextBlock):
            parts.append(TextPart(block.text))
        elif isinstance(block, MEDIA_BLOCK_TYPES):
            parts.append(media_from_block(block, f"{where}.blocks[{j}]"))
        elif isinstance(block, CachePoint):
            cache_point = True
        elif isinstance(block, ToolCallBlock) and role == "assistant":
            call_id = block.tool_call_id or ""
            call = tool_call_from_wire(call_id, block.tool_name, block.tool_kwargs)
            if signatures.get(call_id):
                call = replace(call, signature=signatures[call_id])
            calls.append(call)
        elif isinstance(block, ThinkingBlock) and role == "assistant":
            reasoning.append(block.content or "")
        else:
            raise InvalidRequestError(
                f"{where}.blocks[{j}]: content block type {type(block).__name__} is not supported in a {role} "
                f"message; supported: {_SUPPORTED_BLOCKS}"
            )
    content: str | tuple[Part, ...]
    if all(isinstance(p, TextPart) for p in parts) and (len(parts) <= 1 or role != "user"):
        # One text block, or plain-text system/assistant/tool turns: a string, joined the way
        # ChatMessage.content joins its text blocks.
        content = "\n".join(p.text for p in parts if isinstance(p, TextPart))
    else:
        content = tuple(parts)
    if role == "assistant":
        if not calls and kwargs.get("tool_calls"):
            calls = _legacy_tool_calls(kwargs["tool_calls"], where)
        legacy_reasoning = kwargs.get("reasoning_content")
        text_reasoning = "".join(reasoning) or (legacy_reasoning if isinstance(legacy_reasoning, str) else None) or None
        return Message("assistant", content, tool_calls=tuple(calls), reasoning=text_reasoning, cache_point=cache_point)
    if role == "tool":
        tool_call_id = kwargs.get("tool_call_id")
        if not tool_call_id:
            raise InvalidRequestError(
                f"{where}: a tool message needs the tool_call_id it answers in additional_kwargs['tool_call_id']"
            )
        return Message("tool", content, tool_call_id=str(tool_call_id), cache_point=cache_point)
    name = kwargs.get("name") if role == "user" else None
    return Message(role, content, name=name if isinstance(name, str) else None, cache_point=cache_point)


def messages_from_llama_index(messages: Sequence[ChatMessage]) -> tuple[Message, ...]:
    """LlamaIndex messages to neutral messages, in order; raises on anything it cannot carry."""
    if isinstance(messages, (str, ChatMessage)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(f"messages: expected a sequence of ChatMessage, got {type(messages).__name__}")
    if not messages:
        raise InvalidRequestError("messages: at least one message is required, got an empty list")
    return tuple(_message(m, i) for i, m in enumerate(messages))


def tool_from_llama_index(tool: Any) -> ToolDefinition:
    """A LlamaIndex tool (anything with ``.metadata``), an OpenAI-style tool dict or a `ToolDefinition`."""
    if isinstance(tool, ToolDefinition):
        return tool
    metadata = getattr(tool, "metadata", None)
    if metadata is not None and hasattr(metadata, "to_openai_tool"):
        try:
            spec: Any = metadata.to_openai_tool(skip_length_check=True)
        except Exception as exc:
            raise InvalidRequestError(f"tools: cannot describe {tool!r:.80}: {exc}") from exc
    elif isinstance(tool, Mapping):
        spec = tool
    else:
        raise InvalidRequestError(
            "tools: expected a LlamaIndex tool, an OpenAI-style tool dict or a ToolDefinition, "
            f"got {type(tool).__name__}"
        )
    fn = spec.get("function") if spec.get("type") == "function" or "function" in spec else spec
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise InvalidRequestError(f"tools: {tool!r:.80} is not a function tool; only function tools are supported")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    canonical_json(params, what=f"tools[{fn['name']!r}].parameters")
    return ToolDefinition(str(fn["name"]), str(fn.get("description") or ""), params, fn.get("strict"))


def usage_to_llama_index(usage: Usage) -> dict[str, Any]:
    """The normalized usage dict: what TokenCountingHandler, OpenInference and MLflow all read.

    ``prompt_tokens`` includes cached tokens; the cache read count appears in both the OpenAI
    (``prompt_tokens_details.cached_tokens``) and Anthropic (``cache_read_input_tokens``) spellings.
    """
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def raw_from_core(response: ChatResponse, provider: str) -> dict[str, Any]:
    """``ChatResponse.raw``: usage, model, the price provider id, prefix fingerprint, explicit cache."""
    return {
        "usage": usage_to_llama_index(response.usage),
        "model": response.model,
        "provider": provider,
        "id": response.id,
        "finish_reason": response.finish_reason,
        "prefix_fingerprint": response.prefix_fingerprint,
        "cache": response.cache.as_dict() if response.cache is not None else None,
    }


def _blocks(message: Message, reasoning_tokens: int) -> list[Any]:
    blocks: list[Any] = []
    if message.reasoning:
        blocks.append(ThinkingBlock(content=message.reasoning, num_tokens=reasoning_tokens or None))
    if message.text or not message.tool_calls:
        blocks.append(TextBlock(text=message.text))
    for tc in message.tool_calls:
        kwargs: dict[str, Any] | str = (
            tc.raw_arguments if tc.error is not None and tc.raw_arguments is not None else dict(tc.arguments)
        )
        blocks.append(ToolCallBlock(tool_call_id=tc.id, tool_name=tc.name, tool_kwargs=kwargs))
    return blocks


def _openai_tool_call(tc: ToolCall) -> dict[str, Any]:
    if tc.error is not None and tc.raw_arguments is not None:
        arguments = tc.raw_arguments
    else:
        arguments = canonical_json(dict(tc.arguments), what=f"tool call {tc.name!r} arguments")
    return {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": arguments}}


def chat_response_from_core(response: ChatResponse, provider: str, *, delta: str | None = None) -> LIChatResponse:
    """A complete answer as a LlamaIndex `ChatResponse` (blocks: thinking, text, tool calls)."""
    extra: dict[str, Any] = {}
    if response.message.tool_calls:
        # The OpenAI-shaped copy LlamaIndex's streaming structured output and chat engines look
        # for; the ToolCallBlocks stay authoritative when the message is sent back.
        extra["tool_calls"] = [_openai_tool_call(tc) for tc in response.message.tool_calls]
    if signatures := {tc.id: tc.signature for tc in response.message.tool_calls if tc.signature}:
        extra[SIGNATURES_KEY] = signatures
    message = ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=_blocks(response.message, response.usage.reasoning_tokens),
        additional_kwargs=extra,
    )
    raw = raw_from_core(response, provider)
    return LIChatResponse(message=message, raw=raw, delta=delta, additional_kwargs=usage_to_llama_index(response.usage))


class StreamAccumulator:
    """Collects streamed `StreamChunk`s into the complete `ChatResponse` the final chunk stands for.

    Streaming and non-streaming calls then go through the same conversion, so their messages and
    usage are identical. Tool-call pieces with the same index concatenate; whole calls
    (``index=None``) are kept as they are.
    """

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._by_index: dict[int, dict[str, Any]] = {}

    def add(self, chunk: StreamChunk) -> None:
        if chunk.text:
            self.text.append(chunk.text)
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        for piece in chunk.tool_call_chunks:
            self._add_call(piece)

    def _add_call(self, piece: ToolCallChunk) -> None:
        if piece.index is None or piece.index not in self._by_index:
            call: dict[str, Any] = {
                "id": piece.id or "",
                "name": piece.name or "",
                "arguments": "",
                "signature": piece.signature,
            }
            self._calls.append(call)
            if piece.index is not None:
                self._by_index[piece.index] = call
        else:
            call = self._by_index[piece.index]
            call["id"] = call["id"] or piece.id or ""
            call["name"] = call["name"] or piece.name or ""
            call["signature"] = call["signature"] or piece.signature
        if piece.arguments:
            call["arguments"] += piece.arguments

    def response(self, final: StreamChunk) -> ChatResponse:
        calls = []
        for c in self._calls:
            call = tool_call_from_wire(c["id"], c["name"], c["arguments"])
            if c["signature"]:
                call = replace(call, signature=c["signature"])
            calls.append(call)
        message = Message(
            "assistant",
            "".join(self.text),
            tool_calls=tuple(calls),
            reasoning="".join(self.reasoning) or None,
        )
        return ChatResponse(
            message=message,
            finish_reason=final.finish_reason,
            usage=final.usage or Usage(),
            model=final.model or "",
            id=final.id,
            prefix_fingerprint=final.prefix_fingerprint,
            raw_usage=final.raw_usage,
            cache=final.cache,
        )


def parse_tool_kwargs(kwargs: dict[str, Any] | str) -> dict[str, Any]:
    """A ToolCallBlock's arguments as a dict ({} when the model produced no JSON object)."""
    if isinstance(kwargs, dict):
        return kwargs
    try:
        parsed = json.loads(kwargs) if kwargs.strip() else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
