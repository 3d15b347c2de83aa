"""Normalized token usage: one small type every provider maps into and every handler reads.

Conventions (the ones langchain-core, OpenTelemetry and most providers use):
`input_tokens` includes cache reads and cache writes; `output_tokens` includes reasoning tokens.
A provider that does not report cache reads yields ``cache_read_tokens == 0``.
`cache_storage_token_hours` is explicit-cache storage booked by this call (Gemini bills cached
tokens per hour they are kept): creating a cache books its tokens times its TTL, extending it books
the added hours. `baseline_input_tokens` is the input the call would have had without caching,
when that differs from `input_tokens`: creating a Gemini cache processes its tokens once more, on
top of the prompt, which a call without caching would not have done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Usage", "usage_from_openai"]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_storage_token_hours: float = 0.0
    baseline_input_tokens: int | None = None

    @property
    def input_without_caching(self) -> int:
        """Input tokens of the same call sent without caching."""
        return self.input_tokens if self.baseline_input_tokens is None else self.baseline_input_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input rate."""
        return max(self.input_tokens - self.cache_read_tokens - self.cache_write_tokens, 0)

    @property
    def hit_rate(self) -> float:
        """Share of input tokens served from cache (0.0 when there was no input)."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_storage_token_hours=self.cache_storage_token_hours + other.cache_storage_token_hours,
            baseline_input_tokens=(
                None
                if self.baseline_input_tokens is None and other.baseline_input_tokens is None
                else self.input_without_caching + other.input_without_caching
            ),
        )


def usage_from_openai(raw: Mapping[str, Any] | None) -> Usage:
    """Map an OpenAI-style usage object (GLM, OpenAI, DeepSeek, Qwen) to `Usage`.

    A missing ``prompt_tokens_details`` means the provider did not report cache reads: 0.
    """
    if not raw:
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    cached = raw.get("prompt_cache_hit_tokens")  # DeepSeek's own field wins when present
    if cached is None:
        cached = prompt_details.get("cached_tokens")
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        cache_read_tokens=int(cached or 0),
        cache_write_tokens=int(prompt_details.get("cache_write_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )
