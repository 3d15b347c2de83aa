"""Per-provider caching strategies: what to change in a neutral request so the provider's cache serves it.

- `ImplicitPrefixStrategy` (OpenAI, DeepSeek, Qwen, GLM, vLLM / SGLang / llama.cpp): the cache-friendly layout,
  plus OpenAI's `prompt_cache_key` and retention;
- batch warm-up (`plan_warmup`): one request of a cold shared prefix first, the rest after it.

Framework adapters (`cache_integrations.langchain.with_prompt_caching`, `PromptCachingMiddleware`,
`cache_integrations.llama_index.with_prompt_caching`) pick the strategy with `strategy_for` and apply its
`CachePlan` to the caller's own model class.
"""

from __future__ import annotations

from typing import Any

from .base import (
    PROVIDERS,
    Breakpoint,
    CachePlan,
    CachingStrategy,
    CallContext,
    Provider,
    TokenEstimator,
    message_chars,
    provider_from_hints,
)
from .implicit import ImplicitPrefixStrategy, prompt_cache_key_for
from .warmup import MIN_CACHEABLE_TOKENS, WarmupPlan, plan_warmup

__all__ = [
    "MIN_CACHEABLE_TOKENS",
    "PROVIDERS",
    "Breakpoint",
    "CachePlan",
    "CachingStrategy",
    "CallContext",
    "ImplicitPrefixStrategy",
    "Provider",
    "TokenEstimator",
    "WarmupPlan",
    "message_chars",
    "plan_warmup",
    "prompt_cache_key_for",
    "provider_from_hints",
    "strategy_for",
]


def strategy_for(provider: Provider, **options: Any) -> CachingStrategy:
    """The strategy for `provider`, configured with the options that apply to it.

    Options: `prompt_cache_key`, `retention`, `prompt_cache_options` (implicit / OpenAI).
    """
    implicit = {k: options[k] for k in ("prompt_cache_key", "retention", "prompt_cache_options") if k in options}
    return ImplicitPrefixStrategy(**implicit)
