"""A Gemini explicit cache applied to `ChatGoogleGenerativeAI` (langchain-google-genai) calls.

The core's `GeminiExplicitStrategy` decides (create, reuse, extend the cache through our own client) and returns a
plan with ``cached_content``. Applied here to the caller's LangChain objects: the call names the cache and sends no
system message, no tools, no ``tool_choice`` / ``tool_config`` and none of the turns the cache holds, so
langchain-google-genai never puts ``system_instruction`` or tools next to ``cached_content`` (Gemini's 400,
langchain-google-genai #978, #1528, #1618). Tool calls in the answer are still parsed: ChatGoogleGenerativeAI
reads ``functionCall`` parts whatever tools the request carried, and the agent runs them by name.

The answer then carries the cache in ``response_metadata["cache"]`` (name, expiry, created / extended /
recovered, tokens written and storage booked), and the call that created the cache reports the tokens written as
``input_token_details.cache_creation`` (also counted in ``input_tokens``, since creating a cache bills them at the
input rate), as `ChatGemini` does, so the usage handlers book writes and storage for foreign models too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ..strategies import CachePlan
from ._foreign import PROVIDER_APPLIERS, ForeignCall

__all__ = ["apply_cached_content", "cache_use_chunk", "result_with_cache_use"]

# Settings a request naming a cache must not carry: they belong to the cache (tool config) or are the tools.
_CACHED_SETTINGS = frozenset(("tool_choice", "tool_config", "functions", "tools"))


def apply_cached_content(call: ForeignCall, plan: CachePlan) -> ForeignCall:
    """The call to send against the plan's cache: ``cached_content`` set (by the generic step), no system
    message, no tools or tool settings, and the first ``plan.cached_messages`` non-system messages left out."""
    if not plan.drop_system_and_tools or not plan.options.get("cached_content"):
        return call
    others = tuple(m for m in call.messages if m.type != "system")
    settings = {k: v for k, v in call.settings.items() if k not in _CACHED_SETTINGS}
    settings["cached_content"] = plan.options["cached_content"]  # ours, even over a default the model holds
    return replace(call, system=(), messages=others[plan.cached_messages :], tools=(), settings=settings)


def _written_usage(written: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=written, output_tokens=0, total_tokens=written, input_token_details={"cache_creation": written}
    )


def _with_use(message: BaseMessage, use: Any) -> BaseMessage:
    metadata = {**message.response_metadata, "cache": use.as_dict()}
    update: dict[str, Any] = {"response_metadata": metadata}
    usage = getattr(message, "usage_metadata", None)
    if use.written_tokens and usage:
        details = dict(usage.get("input_token_details") or {})
        details["cache_creation"] = int(details.get("cache_creation") or 0) + use.written_tokens
        update["usage_metadata"] = {
            **usage,
            "input_tokens": usage["input_tokens"] + use.written_tokens,
            "total_tokens": usage["total_tokens"] + use.written_tokens,
            "input_token_details": details,
        }
    return message.model_copy(update=update)


def result_with_cache_use(result: ChatResult, use: Any) -> ChatResult:
    """`result` with the cache `use` (a `CacheUse`, or None: unchanged) in each answer's metadata and usage."""
    if use is None:
        return result
    generations = [
        ChatGeneration(message=_with_use(g.message, use), generation_info=g.generation_info) for g in result.generations
    ]
    return ChatResult(generations=generations, llm_output=result.llm_output)


def cache_use_chunk(use: Any) -> ChatGenerationChunk:
    """The chunk a stream ends with when it used a cache: its metadata, and the tokens written if it created it."""
    usage = _written_usage(use.written_tokens) if use.written_tokens else None
    return ChatGenerationChunk(
        message=AIMessageChunk(content="", response_metadata={"cache": use.as_dict()}, usage_metadata=usage)
    )


PROVIDER_APPLIERS["google"] = apply_cached_content
