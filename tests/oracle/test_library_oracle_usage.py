"""The core usage readers on hand-copied OpenAI, DeepSeek and DashScope usage blocks (expected values by hand).

Both adapters read usage through these (``usage_from_openai`` for OpenAI-style blocks, ``usage_from_mapping``
in the LlamaIndex handler, the LangChain reader's fallback on ``token_usage``).
"""

from __future__ import annotations

from cache_integrations.usage import Usage, usage_from_mapping, usage_from_openai

from . import load


def test_gpt56_explicit_write_then_read() -> None:
    first, second = (b["usage"] for b in load("openai_gpt56_explicit_cache")["bodies"])
    assert usage_from_openai(first) == Usage(input_tokens=4020, cache_write_tokens=4012, output_tokens=4)
    assert usage_from_openai(second) == Usage(input_tokens=4020, cache_read_tokens=4012, output_tokens=4)
    assert usage_from_mapping(second) == usage_from_openai(second)


def test_pre_56_implicit_hit() -> None:
    oracle = load("openai_implicit_cache_usage")
    assert usage_from_openai(oracle["usage_warm"]) == Usage(
        input_tokens=1170, cache_read_tokens=1024, output_tokens=16, reasoning_tokens=16
    )


def test_deepseek_hit_and_miss() -> None:
    oracle = load("deepseek_chat_usage")
    assert usage_from_openai(oracle["body"]["usage"]) == Usage(
        input_tokens=339, cache_read_tokens=320, output_tokens=92, reasoning_tokens=48
    )
    older = {
        "prompt_tokens": 339,
        "completion_tokens": 92,
        "prompt_cache_hit_tokens": 320,
        "prompt_cache_miss_tokens": 19,
    }
    assert usage_from_openai(older).cache_read_tokens == 320  # answers without prompt_tokens_details
    assert usage_from_openai(oracle["sse_events"][-1]["usage"]) == Usage(input_tokens=13, output_tokens=400)


def test_dashscope_implicit_and_explicit() -> None:
    oracle = load("dashscope_compat_usage")
    assert usage_from_openai(oracle["body"]["usage"]) == Usage(input_tokens=295, output_tokens=22)
    explicit = {"prompt_tokens": 29719, "completion_tokens": 3, **oracle["explicit_usage_doc"]}
    usage = usage_from_mapping(explicit)
    assert usage is not None and usage.cache_write_tokens == 29713 and usage.cache_read_tokens == 0
    assert usage.uncached_input_tokens == 6
