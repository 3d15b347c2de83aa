"""What the emulator reports about itself: counter snapshots and the request log's entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import Endpoint

__all__ = ["MAPPING_COUNTERS", "EmulatorCounters", "RecordedRequest"]

MAPPING_COUNTERS = ("requests_by_endpoint", "cached_tokens_by_endpoint", "cache_write_tokens_by_endpoint")


@dataclass(frozen=True)
class EmulatorCounters:
    """A snapshot of what the emulator served since construction or ``reset_counters()``.

    ``cached_tokens_implicit`` sums reported implicit prefix hits (all endpoints);
    ``cached_tokens_explicit`` sums tokens served from caches the client asked for: Gemini
    ``cachedContents`` (``cachedContentTokenCount``) and Anthropic ``cache_control`` breakpoints
    (``cache_read_input_tokens``). ``cache_write_tokens`` sums Anthropic ``cache_creation_input_tokens``.
    ``cached_tokens_by_endpoint`` / ``cache_write_tokens_by_endpoint`` split reads and writes per API
    (``"glm"``, ``"openai"``, ``"deepseek"``, ``"dashscope"``, ``"gemini"``, ``"anthropic"``), to compare
    with what a client reported; writes include OpenAI ``cache_write_tokens`` (GPT-5.6) and DashScope
    ``cache_creation_input_tokens``.
    ``prompt_tokens`` counts whole prompts (for Anthropic: input + cache creation + cache read).
    ``errors_injected`` counts fault-injected answers; ``error_responses`` every 4xx/5xx answer.
    """

    requests_total: int = 0
    requests_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens_implicit: int = 0
    cached_tokens_explicit: int = 0
    cache_write_tokens: int = 0
    cached_tokens_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    cache_write_tokens_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    implicit_cache_hits: int = 0
    generate_calls: int = 0
    caches_created: int = 0
    caches_deleted: int = 0
    caches_expired: int = 0
    caches_alive: int = 0
    files_uploaded: int = 0
    files_deleted: int = 0
    files_expired: int = 0
    files_alive: int = 0
    upload_bytes: int = 0
    errors_injected: int = 0
    error_responses: int = 0

    @property
    def cached_tokens(self) -> int:
        """Implicit plus explicit cached tokens."""
        return self.cached_tokens_implicit + self.cached_tokens_explicit


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it (API keys redacted), with the status it answered.

    ``usage`` is the usage block the emulator sent back, exactly as on the wire (GLM/OpenAI ``usage``,
    Gemini ``usageMetadata``; for a stream, the last one sent; for a created ``cachedContents``
    resource, its ``usageMetadata``), or ``None`` when the answer had none.
    Tests compare what a client reports against it, not against numbers the client computed.
    """

    seq: int
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    endpoint: Endpoint | None
    model: str | None
    body: Any
    status: int
    usage: Mapping[str, Any] | None = None
    replica: int | None = None
    """With ``Emulator(openai_physics=...)``: the OpenAI cache machine the request was routed to."""
