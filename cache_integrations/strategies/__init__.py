"""Per-provider caching strategies: what to change in a neutral request so the provider's cache serves it.

- `AnthropicBreakpointStrategy`: at most four `cache_control` breakpoints (system prompt, the request's end, the
  previous request's end past the 20-block lookback), above the model's minimum, with a TTL by expected reuse;
- `ImplicitPrefixStrategy` (OpenAI, DeepSeek, Qwen, GLM, vLLM / SGLang / llama.cpp): the cache-friendly layout,
  plus OpenAI's `prompt_cache_key` and retention;
- batch warm-up (`plan_warmup`): one request of a cold shared prefix first, the rest after it.

Framework adapters (`cache_integrations.langchain.with_prompt_caching`, `PromptCachingMiddleware`,
`cache_integrations.llama_index.with_prompt_caching`) pick the strategy with `strategy_for` and apply its
`CachePlan` to the caller's own model class.
"""

from __future__ import annotations

import threading
from typing import Any

from ..messages import ChatRequest
from ..usage import Usage
from .anthropic import ANTHROPIC_MIN_CACHEABLE_TOKENS, AnthropicBreakpointStrategy, anthropic_min_tokens
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
    "ANTHROPIC_MIN_CACHEABLE_TOKENS",
    "MIN_CACHEABLE_TOKENS",
    "PROVIDERS",
    "AnthropicBreakpointStrategy",
    "Breakpoint",
    "CachePlan",
    "CachingStrategy",
    "CallContext",
    "ImplicitPrefixStrategy",
    "Provider",
    "StrategyBook",
    "TokenEstimator",
    "WarmupPlan",
    "anthropic_min_tokens",
    "message_chars",
    "plan_warmup",
    "prompt_cache_key_for",
    "provider_from_hints",
    "strategy_for",
]


_IMPLICIT_OPTIONS = ("prompt_cache_key", "retention", "prompt_cache_options")
_ANTHROPIC_OPTIONS = ("ttl", "min_tokens")


def strategy_for(provider: Provider, *, estimator: TokenEstimator | None = None, **options: Any) -> CachingStrategy:
    """The strategy for `provider`, configured with the options that apply to it.

    Implicit / OpenAI: `prompt_cache_key`, `retention`, `prompt_cache_options`. Anthropic: `ttl`
    (``"auto"``, ``"5m"``, ``"1h"``), `min_tokens` (model -> minimum cacheable tokens). Options meant for
    other providers are ignored, so one set of options serves a middleware whatever the model.
    """
    if provider == "anthropic":
        anthropic = {k: options[k] for k in _ANTHROPIC_OPTIONS if k in options}
        return AnthropicBreakpointStrategy(estimator=estimator, **anthropic)
    return ImplicitPrefixStrategy(**{k: options[k] for k in _IMPLICIT_OPTIONS if k in options})


class StrategyBook:
    """The strategies one wrapped model or middleware uses, one per provider, with what they learn.

    Both frameworks' adapters hold one: `plan` picks the provider's strategy (or the caller's forced
    `provider`) and `observe` feeds reported usage back (the token estimator's calibration, Anthropic's
    breakpoint memory, ...). Thread-safe.
    """

    def __init__(self, *, provider: str | None = None, layout: bool = True, **options: Any) -> None:
        from ..errors import ConfigurationError

        if provider is not None and provider not in PROVIDERS:
            raise ConfigurationError(f"provider: {provider!r} is not one of {list(PROVIDERS)}")
        self.provider: Provider | None = provider  # type: ignore[assignment]
        self.layout = bool(layout)
        self.options = options
        self.estimator = TokenEstimator()
        self._strategies: dict[str, CachingStrategy] = {}
        self._lock = threading.Lock()

    def strategy(self, provider: Provider) -> CachingStrategy:
        with self._lock:
            strategy = self._strategies.get(provider)
            if strategy is None:
                strategy = self._strategies[provider] = strategy_for(provider, estimator=self.estimator, **self.options)
            return strategy

    def cache_key(self, context: CallContext) -> str | None:
        """The routing key (`prompt_cache_key`) a call of `context` is sent with, if its provider routes on one.

        Batch warm-up warms one request per prefix *and* key: requests with different keys land on
        different cache machines, so each needs its own leader.
        """
        if not self.layout:
            return None
        strategy = self.strategy(context.provider)
        key_of = getattr(strategy, "cache_key", None)
        return key_of(context) if callable(key_of) else None

    def plan(self, request: ChatRequest, context: CallContext) -> CachePlan | None:
        """The plan for a call, or None when the layout step is off."""
        if not self.layout:
            return None
        return self.strategy(context.provider).plan(request, context)

    def observe(
        self, request: ChatRequest, context: CallContext, plan: CachePlan | None, usage: Usage | None, chars: int
    ) -> None:
        if usage is not None:
            self.estimator.calibrate(context.model, chars, usage.input_tokens)
        if plan is not None:
            self.strategy(context.provider).observe(request, context, plan, usage)
