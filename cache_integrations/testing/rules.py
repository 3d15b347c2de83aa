"""Implicit prefix-cache rule sets, as data, so tests can model any provider's published limits."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DASHSCOPE_RULES", "DEEPSEEK_RULES", "GEMINI_RULES", "GLM_RULES", "OPENAI_RULES", "CacheRules"]


@dataclass(frozen=True)
class CacheRules:
    """How a provider turns "the longest prefix already seen" into reported cached tokens.

    ``min_tokens``: a matched prefix shorter than this is reported as 0 (OpenAI: 1024).
    ``granularity``: the reported count is floored to a multiple of this (OpenAI: 128).
    ``ttl_seconds``: how long a sent prompt stays reusable; each hit refreshes it.
    ``enabled``: ``False`` turns implicit caching off (every request is a miss).
    """

    min_tokens: int = 0
    granularity: int = 1
    ttl_seconds: float = 300.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.min_tokens < 0 or self.granularity < 1 or self.ttl_seconds < 0:
            raise ValueError("CacheRules needs min_tokens >= 0, granularity >= 1, ttl_seconds >= 0")

    def reportable(self, matched_tokens: int) -> int:
        """Cached tokens to report for a raw prefix match of ``matched_tokens`` tokens."""
        if not self.enabled or matched_tokens < self.min_tokens:
            return 0
        return matched_tokens - matched_tokens % self.granularity


GLM_RULES = CacheRules(min_tokens=0, granularity=1, ttl_seconds=300.0)
"""Zhipu GLM: no observable minimum, token granularity (hits of 4, 7, 43 tokens are on record)."""

OPENAI_RULES = CacheRules(min_tokens=1024, granularity=128, ttl_seconds=300.0)
"""OpenAI (pre gpt-5.6): prompts of 1024+ tokens, hits reported in 128-token increments."""

GEMINI_RULES = CacheRules(min_tokens=1024, granularity=1, ttl_seconds=300.0)
"""Gemini 2.5+ implicit caching: 1024-token minimum (Flash; Pro documents more), no granularity."""

DEEPSEEK_RULES = CacheRules(min_tokens=64, granularity=64, ttl_seconds=3600.0)
"""DeepSeek context caching on disk: 64-token storage units (api-docs.deepseek.com/guides/kv_cache; the
recorded hits are 320 of 339 and 320 of 495 tokens), kept "a few hours to a few days": one hour here."""

DASHSCOPE_RULES = CacheRules(min_tokens=256, granularity=1, ttl_seconds=300.0)
"""Qwen on DashScope, implicit mode: prompts from 256 tokens (Alibaba's context-cache page, 2026); the
validity is not guaranteed ("periodically cleared"): 5 minutes here. Explicit ``cache_control`` markers
are modelled in ``_breakpoints`` (1024-token minimum, 5 minutes reset on each hit)."""
