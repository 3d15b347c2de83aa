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
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Usage", "as_mapping", "usage_from_mapping", "usage_from_openai", "with_cache_booking"]


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

    Reads: ``prompt_tokens_details.cached_tokens``, or DeepSeek's ``prompt_cache_hit_tokens`` (which wins:
    older DeepSeek answers carry only the ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens`` pair).
    Writes: OpenAI GPT-5.6's ``prompt_tokens_details.cache_write_tokens`` or DashScope's explicit-mode
    ``prompt_tokens_details.cache_creation_input_tokens``. Every provider here includes reads and writes in
    ``prompt_tokens``. A missing ``prompt_tokens_details`` means the provider did not report cache reads: 0.
    """
    if not raw:
        return Usage()
    prompt_details = as_mapping(raw.get("prompt_tokens_details")) or {}
    completion_details = as_mapping(raw.get("completion_tokens_details")) or {}
    cached = raw.get("prompt_cache_hit_tokens")  # DeepSeek's own field wins when present
    if cached is None:
        cached = prompt_details.get("cached_tokens")
    written = prompt_details.get("cache_write_tokens") or prompt_details.get("cache_creation_input_tokens")
    return Usage(
        input_tokens=_int(raw.get("prompt_tokens")),
        cache_read_tokens=_int(cached),
        cache_write_tokens=_int(written),
        output_tokens=_int(raw.get("completion_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
    )


def as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A mapping view of a usage value: a dict, a pydantic model, or a plain object."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, Mapping) else None
    attrs = getattr(value, "__dict__", None)
    return attrs if isinstance(attrs, Mapping) else None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return as_mapping(usage.get(key)) or {}


def usage_from_mapping(usage: Mapping[str, Any]) -> Usage | None:
    """Any usage shape a framework integration reports, as a `Usage` (None when none is recognised):
    this package's normalized dict, OpenAI chat completions and Responses, Anthropic (whose input
    excludes cache reads and writes), Gemini's usageMetadata (camelCase or snake_case)."""
    if "prompt_tokens" in usage:  # this package's normalized dict, OpenAI chat completions, GLM
        base = usage_from_openai(usage)
        read = base.cache_read_tokens or _int(usage.get("cache_read_input_tokens"))
        write = base.cache_write_tokens or _int(usage.get("cache_creation_input_tokens"))
        return replace(base, cache_read_tokens=read, cache_write_tokens=write)
    if "prompt_token_count" in usage or "promptTokenCount" in usage:
        # Gemini: google-genai's usage_metadata (snake_case) or the REST usageMetadata (camelCase)
        def get(key: str) -> int:
            return _int(usage.get(key) if key in usage else usage.get(_camel(key)))

        thoughts = get("thoughts_token_count")
        return Usage(
            input_tokens=get("prompt_token_count"),
            cache_read_tokens=get("cached_content_token_count"),
            output_tokens=get("candidates_token_count") + thoughts,
            reasoning_tokens=thoughts,
        )
    if "input_tokens" in usage:
        output_details = _details(usage, "output_tokens_details")
        if "input_tokens_details" in usage:  # OpenAI Responses: input includes cached tokens
            return Usage(
                input_tokens=_int(usage.get("input_tokens")),
                cache_read_tokens=_int(_details(usage, "input_tokens_details").get("cached_tokens")),
                output_tokens=_int(usage.get("output_tokens")),
                reasoning_tokens=_int(output_details.get("reasoning_tokens")),
            )
        # Anthropic: input_tokens excludes cache reads and writes
        read = _int(usage.get("cache_read_input_tokens"))
        write = _int(usage.get("cache_creation_input_tokens"))
        return Usage(
            input_tokens=_int(usage.get("input_tokens")) + read + write,
            cache_read_tokens=read,
            cache_write_tokens=write,
            output_tokens=_int(usage.get("output_tokens")),
        )
    return None


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.title() for w in rest)


def with_cache_booking(usage: Usage, cache: Any) -> Usage:
    """Add the explicit-cache storage and creation a call booked (``raw["cache"]``) to its usage.

    Storage token-hours make savings net of storage; tokens written on top of the prompt (creating a
    Gemini cache) are not part of the no-cache baseline. Both frameworks' handlers use it.
    """
    cache = as_mapping(cache)
    if not cache:
        return usage
    written = _int(cache.get("written_tokens"))
    hours = float(cache.get("storage_token_hours") or 0.0)
    return replace(
        usage,
        cache_storage_token_hours=usage.cache_storage_token_hours + hours,
        baseline_input_tokens=usage.input_tokens - written if written else usage.baseline_input_tokens,
    )
