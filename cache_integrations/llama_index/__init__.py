"""LlamaIndex integration: cache-aware LLMs, cache usage handlers and cache-friendly RAG.

* `with_prompt_caching(llm)`: prompt caching for any LlamaIndex LLM you already have (OpenAI, OpenAILike,
  Anthropic, GoogleGenAI, ...); `prompt_cache_session(id)` scopes calls to one conversation.
* `GLM`, `Gemini`, `OpenAICompatible` (DeepSeek, DashScope, vLLM, SGLang, llama.cpp, ...): `FunctionCallingLLM`s
  over the core providers (normalized usage with cached
  tokens on every response; Gemini manages explicit caches, `Gemini.cache_context` pins one).
* `CacheUsageHandler` (instrumentation) and `CachedTokenCountingHandler` (callback manager):
  cached tokens, hit rate and money saved for any LlamaIndex LLM.
* `CacheFriendlyContextChatEngine`, `StableNodeOrder`: RAG layouts that keep prefixes cacheable.
"""

from __future__ import annotations

from . import _anthropic as _anthropic  # registers the Anthropic applier where the with_prompt_caching registry exists
from .caching import PromptCachingLLM, prompt_cache_session, with_prompt_caching
from .gemini import Gemini, PinnedContext
from .handlers import (
    CachedTokenCountingHandler,
    CacheUsageHandler,
    get_cache_usage_handler,
    usage_from_llama_index,
)
from .llms import GLM, CachingLLM
from .openai_compatible import OpenAICompatible
from .rag import CacheFriendlyContextChatEngine, StableNodeOrder

__all__ = [
    "GLM",
    "CacheFriendlyContextChatEngine",
    "CacheUsageHandler",
    "CachedTokenCountingHandler",
    "CachingLLM",
    "Gemini",
    "OpenAICompatible",
    "PinnedContext",
    "PromptCachingLLM",
    "StableNodeOrder",
    "get_cache_usage_handler",
    "prompt_cache_session",
    "usage_from_llama_index",
    "with_prompt_caching",
]
