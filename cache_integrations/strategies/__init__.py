"""Per-provider caching strategies: what to change in a neutral request so the provider's cache serves it.

- `AnthropicBreakpointStrategy`: at most four `cache_control` breakpoints (system prompt, the request's end, the
  previous request's end past the 20-block lookback), above the model's minimum, with a TTL by expected reuse;
- `ImplicitPrefixStrategy` (OpenAI, DeepSeek, Qwen, GLM, vLLM / SGLang / llama.cpp): the cache-friendly layout,
  plus OpenAI's `prompt_cache_key` and retention;
- `GeminiExplicitStrategy`: a Gemini explicit cache (`ExplicitCacheManager`) behind any Gemini client, with
  ``cached_content`` in place of the system prompt, tools and cached turns;
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
from .anthropic import (
    ANTHROPIC_MIN_CACHEABLE_TOKENS,
    AnthropicBreakpointStrategy,
    anthropic_min_tokens,
    breakpoint_position,
    cache_control_of,
    fit_caller_ttls,
    within_budget,
)
from .base import (
    PROVIDERS,
    SESSION_KEYS,
    Breakpoint,
    CachePlan,
    CachingStrategy,
    CallContext,
    Provider,
    TokenEstimator,
    message_chars,
    provider_from_hints,
    request_chars,
    session_from_metadata,
)
from .gemini import (
    GEMINI_OPTIONS,
    GeminiEndpoint,
    GeminiExplicitStrategy,
    cached_content_gone,
    gemini_endpoint,
    gemini_options,
    tool_choice_from_gemini_config,
    tools_from_gemini,
)
from .implicit import ImplicitPrefixStrategy, prompt_cache_key_for
from .warmup import MIN_CACHEABLE_TOKENS, WarmupPlan, plan_warmup

__all__ = [
    "ANTHROPIC_MIN_CACHEABLE_TOKENS",
    "GEMINI_OPTIONS",
    "MIN_CACHEABLE_TOKENS",
    "PROVIDERS",
    "SESSION_KEYS",
    "STRATEGY_OPTIONS",
    "AnthropicBreakpointStrategy",
    "Breakpoint",
    "CachePlan",
    "CachingStrategy",
    "CallContext",
    "GeminiEndpoint",
    "GeminiExplicitStrategy",
    "ImplicitPrefixStrategy",
    "Provider",
    "StrategyBook",
    "TokenEstimator",
    "WarmupPlan",
    "anthropic_min_tokens",
    "breakpoint_position",
    "cache_control_of",
    "cached_content_gone",
    "client_endpoint",
    "fit_caller_ttls",
    "gemini_endpoint",
    "message_chars",
    "plan_warmup",
    "prompt_cache_key_for",
    "provider_from_hints",
    "request_chars",
    "session_from_metadata",
    "strategy_for",
    "tool_choice_from_gemini_config",
    "tools_from_gemini",
    "within_budget",
]

_IMPLICIT_OPTIONS = ("prompt_cache_key", "retention", "prompt_cache_options")
_ANTHROPIC_OPTIONS = ("ttl", "min_tokens", "clock")
_ADAPTER_OPTIONS = ("server_diagnostics",)  # read by the adapters, not by a strategy
STRATEGY_OPTIONS: tuple[str, ...] = (*_IMPLICIT_OPTIONS, *_ANTHROPIC_OPTIONS, *GEMINI_OPTIONS, *_ADAPTER_OPTIONS)
"""The strategy options `StrategyBook` (and so every adapter) accepts; a strategy that takes a new option
adds its name here, and anything else is rejected before a call is made (a typo never goes unnoticed)."""


def strategy_for(provider: Provider, *, estimator: TokenEstimator | None = None, **options: Any) -> CachingStrategy:
    """The strategy for `provider`, configured with the options that apply to it.

    Implicit / OpenAI: `prompt_cache_key`, `retention`, `prompt_cache_options`. Anthropic: `ttl`
    (``"auto"``, ``"5m"``, ``"1h"``), `min_tokens` (model -> minimum cacheable tokens), `clock` (a
    monotonic clock for the reuse gaps, for simulations and tests). Google: `cache_mode` (``"auto"``,
    ``"always"``, ``"off"``), `cache_ttl`, `cache_registry`. Options meant for other providers are ignored,
    so one set of options serves a middleware whatever the model.
    """
    if provider == "anthropic":
        anthropic = {k: options[k] for k in _ANTHROPIC_OPTIONS if k in options}
        return AnthropicBreakpointStrategy(estimator=estimator, **anthropic)
    if provider == "google":
        return GeminiExplicitStrategy(**gemini_options(options))
    return ImplicitPrefixStrategy(**{k: options[k] for k in _IMPLICIT_OPTIONS if k in options})


class StrategyBook:
    """The strategies one wrapped model or middleware uses, one per provider, with what they learn.

    Both frameworks' adapters hold one: `plan` picks the provider's strategy (or the caller's forced
    `provider`) and `observe` feeds reported usage back (the token estimator's calibration, Anthropic's
    breakpoint memory, ...). Thread-safe.
    """

    def __init__(self, *, provider: str | None = None, layout: bool = True, **options: Any) -> None:
        from ..errors import ConfigurationError

        self.label: str | None = None
        """The price label the caller named (``vllm``, ``deepseek`` ...), calls are priced under; None: detected."""
        if provider is not None and provider not in PROVIDERS:
            # A server label (vllm, sglang, llamacpp) or another host's genai-prices id: an OpenAI-compatible
            # server, cached implicitly with the layout, priced under its label.
            from ..providers.openai_compatible import check_label

            try:
                self.label = check_label(provider)
            except ConfigurationError:
                raise ConfigurationError(
                    f"provider: {provider!r} is not one of {list(PROVIDERS)}, a server label (vllm, sglang, "
                    "llamacpp) nor a genai-prices provider id"
                ) from None
            provider = "openai_compatible"
        elif provider is not None:
            self.label = provider
        unknown = sorted(set(options) - set(STRATEGY_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"{unknown[0]}: not a prompt-caching option; allowed: provider, layout, {', '.join(STRATEGY_OPTIONS)}"
            )
        self.provider: Provider | None = provider  # type: ignore[assignment]
        server_diagnostics = options.get("server_diagnostics", False)
        if not isinstance(server_diagnostics, bool):
            raise ConfigurationError(f"server_diagnostics: expected True or False, got {server_diagnostics!r}")
        self.server_diagnostics = server_diagnostics
        """Ask the provider's own cache diagnostics on every call where it offers them (Anthropic)."""
        for known in ("openai", "anthropic"):  # option values are checked now, not at the first call
            strategy_for(known, **options)
        gemini_options(options)  # bad values are reported now, not at the first Gemini call
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

    async def aplan(self, request: ChatRequest, context: CallContext) -> CachePlan | None:
        """`plan` for async callers: a strategy that talks to the provider (creating a Gemini cache) awaits."""
        if not self.layout:
            return None
        strategy = self.strategy(context.provider)
        aplan = getattr(strategy, "aplan", None)
        if aplan is None:
            return strategy.plan(request, context)
        plan: CachePlan = await aplan(request, context)
        return plan

    def recover(self, request: ChatRequest, context: CallContext, plan: CachePlan | None) -> CachePlan | None:
        """After the model reported the plan's explicit cache gone: a plan for one retry (a new cache, or none),
        or None when the plan used no cache (the caller re-raises)."""
        if plan is None or plan.cache is None:
            return None
        recover = getattr(self.strategy(context.provider), "recover", None)
        return None if recover is None else recover(request, context, plan)

    async def arecover(self, request: ChatRequest, context: CallContext, plan: CachePlan | None) -> CachePlan | None:
        if plan is None or plan.cache is None:
            return None
        arecover = getattr(self.strategy(context.provider), "arecover", None)
        return None if arecover is None else await arecover(request, context, plan)

    def observe(
        self, request: ChatRequest, context: CallContext, plan: CachePlan | None, usage: Usage | None, chars: int
    ) -> None:
        if usage is not None:
            self.estimator.calibrate(context.model, chars, usage.input_tokens)
        if plan is not None:
            self.strategy(context.provider).observe(request, context, plan, usage)


def client_endpoint(provider: str, model: Any) -> Any:
    """Where and as whom a foreign model object sends its requests, for the strategies that need it
    (`CallContext.endpoint`): a `GeminiEndpoint` for Google clients, else None."""
    return gemini_endpoint(model) if provider == "google" else None
