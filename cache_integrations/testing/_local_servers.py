"""Local OpenAI-compatible servers' usage shapes on the emulator's OpenAI route: vLLM and llama.cpp.

``Emulator.openai_dialect`` (``"openai"`` by default) makes ``/v1/chat/completions`` answer as such a server:

* ``"vllm"``: vLLM's OpenAI server (``vllm/entrypoints/openai`` serving_chat, ``if
  self.enable_prompt_tokens_details and num_cached_tokens:``): ``prompt_tokens_details`` only when something was
  read from the prefix cache, ``null`` otherwise (the server started with ``--enable-prompt-tokens-details``);
* ``"llamacpp"``: llama.cpp's server (build b7010, as recorded in charmbracelet/fantasy
  ``providertests/testdata/TestOpenAICompatibleCommon/llama-cpp-gpt-oss``): usage without any cache field,
  and a top-level ``timings`` object whose ``cache_n`` counts the prompt tokens the slot reused and
  ``prompt_n`` those evaluated anew; on a stream, on the ``choices: []`` usage chunk.

Their caching is modelled by the rule sets below, passed as ``Emulator(openai_rules=...)``: vLLM's automatic
prefix caching reuses whole KV blocks (16 tokens by default); llama.cpp reuses any common prefix with its slot's
previous prompt. The emulator keeps every recent prompt, not only a slot's last one.
"""

from __future__ import annotations

from typing import Any, Literal

from .rules import CacheRules

__all__ = ["LLAMACPP_RULES", "VLLM_RULES", "OpenAIDialect", "local_usage"]

OpenAIDialect = Literal["openai", "vllm", "llamacpp"]

VLLM_RULES = CacheRules(min_tokens=16, granularity=16, ttl_seconds=3600.0)
"""vLLM automatic prefix caching: full 16-token blocks (``--block-size`` default), kept until evicted (an hour)."""

LLAMACPP_RULES = CacheRules(min_tokens=0, granularity=1, ttl_seconds=3600.0)
"""llama.cpp's slot cache: any common prefix, token by token."""


def local_usage(
    dialect: str, prompt: int, cached: int, completion: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(usage, timings) as ``dialect`` answers them; timings only for llama.cpp."""
    if dialect == "vllm":
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached} if cached else None,
        }
        return usage, None
    usage = {"completion_tokens": completion, "prompt_tokens": prompt, "total_tokens": prompt + completion}
    fresh = prompt - cached
    timings = {
        "cache_n": cached,
        "prompt_n": fresh,
        "prompt_ms": round(fresh * 3.48, 3),
        "prompt_per_token_ms": 3.48,
        "prompt_per_second": 287.3,
        "predicted_n": completion,
        "predicted_ms": round(completion * 8.34, 3),
        "predicted_per_token_ms": 8.34,
        "predicted_per_second": 119.97,
    }
    return usage, timings
