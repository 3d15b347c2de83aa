"""Normalized token usage: one small type every provider maps into and every handler reads.

Conventions (the ones langchain-core, OpenTelemetry and most providers use):
`input_tokens` includes cache reads and cache writes; `output_tokens` includes reasoning tokens.
A provider that does not report cache reads yields ``cache_read_tokens == 0``.
`cache_storage_token_hours` is explicit-cache storage booked by this call (Gemini bills cached
tokens per hour they are kept): creating a cache books its tokens times its TTL, extending it books
the added hours. `baseline_input_tokens` is the input the call would have had without caching,
when that differs from `input_tokens`: creating a Gemini cache processes its tokens once more, on
top of the prompt, which a call without caching would not have done.

Usage a provider did not report, or reported as garbage (negative or non-numeric counts), is
unknown: ``None`` wherever a `Usage` is expected, never zeros, so no tokens are booked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "InvalidUsage",
    "Usage",
    "as_mapping",
    "strict_count",
    "strict_details",
    "usage_from_mapping",
    "usage_from_openai",
    "with_cache_booking",
]


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


class InvalidUsage(ValueError):
    """A usage count is missing where required, negative, or not a number."""


def strict_count(usage: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    """A token count from a provider's usage object: 0 when absent or null (unless `required`),
    else a non-negative integer (an integral float is accepted); anything else is `InvalidUsage`."""
    value = usage.get(key)
    if value is None:
        if required:
            raise InvalidUsage(f"{key} is missing")
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidUsage(f"{key} is not a number: {value!r:.40}")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidUsage(f"{key} is not a whole number: {value!r}")
    if value < 0:
        raise InvalidUsage(f"{key} is negative: {value!r}")
    return int(value)


def strict_details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested details object: {} when absent or null, `InvalidUsage` when not an object."""
    value = usage.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidUsage(f"{key} is not an object")
    return value


def usage_from_openai(raw: Any) -> Usage | None:
    """Map an OpenAI-style usage object (GLM, OpenAI, DeepSeek, Qwen) to `Usage`.

    A missing ``prompt_tokens_details`` means the provider did not report cache reads: 0. DeepSeek's
    ``prompt_cache_hit_tokens`` are its cache reads; ``prompt_tokens`` includes cache reads and writes.
    Written tokens: OpenAI's explicit mode (GPT-5.6) says ``cache_write_tokens``, DashScope's explicit cache
    (Qwen, OpenAI-compatible mode) ``cache_creation_input_tokens``, both inside ``prompt_tokens_details``.
    A usage that is missing, lacks ``prompt_tokens``, or holds a negative or non-numeric count is unknown:
    None, never zeros (the caller reports the call's usage as unknown).
    """
    if not isinstance(raw, Mapping):
        return None
    try:
        prompt_details = strict_details(raw, "prompt_tokens_details")
        completion_details = strict_details(raw, "completion_tokens_details")
        if raw.get("prompt_cache_hit_tokens") is not None:  # DeepSeek's own field wins when present
            cached = strict_count(raw, "prompt_cache_hit_tokens")
        else:
            cached = strict_count(prompt_details, "cached_tokens")
        written = strict_count(prompt_details, "cache_write_tokens") or strict_count(
            prompt_details, "cache_creation_input_tokens"
        )
        return Usage(
            input_tokens=strict_count(raw, "prompt_tokens", required=True),
            cache_read_tokens=cached,
            cache_write_tokens=written,
            output_tokens=strict_count(raw, "completion_tokens"),
            reasoning_tokens=strict_count(completion_details, "reasoning_tokens"),
        )
    except InvalidUsage:
        return None


def _lenient_openai(raw: Mapping[str, Any]) -> Usage:
    """`usage_from_openai` for usage a framework integration already normalized (no None)."""
    prompt_details = _details(raw, "prompt_tokens_details")
    completion_details = _details(raw, "completion_tokens_details")
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
        base = _lenient_openai(usage)
        read = base.cache_read_tokens or _int(usage.get("cache_read_input_tokens"))
        write = base.cache_write_tokens or _int(usage.get("cache_creation_input_tokens"))
        return replace(base, cache_read_tokens=read, cache_write_tokens=write)
    if "prompt_token_count" in usage or "promptTokenCount" in usage:
        # Gemini: google-genai's usage_metadata (snake_case) or the REST usageMetadata (camelCase)
        def get(key: str) -> int:
            return _int(usage.get(key) if key in usage else usage.get(_camel(key)))

        # promptTokenCount includes the cached tokens; tool-use prompt tokens (Google Search, code
        # execution results fed back to the model) are billed as input too (as providers.gemini counts them).
        thoughts = get("thoughts_token_count")
        return Usage(
            input_tokens=get("prompt_token_count") + get("tool_use_prompt_token_count"),
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
    Gemini cache) are not part of the no-cache baseline, and count as cache writes also when the model's own
    usage has no field for them (foreign Gemini clients). Both frameworks' handlers use it.
    """
    cache = as_mapping(cache)
    if not cache:
        return usage
    written = _int(cache.get("written_tokens"))
    hours = float(cache.get("storage_token_hours") or 0.0)
    return replace(
        usage,
        cache_storage_token_hours=usage.cache_storage_token_hours + hours,
        cache_write_tokens=max(usage.cache_write_tokens, written),
        baseline_input_tokens=usage.input_tokens - written if written else usage.baseline_input_tokens,
    )
