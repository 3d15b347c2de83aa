"""DeepSeek and DashScope dialects of the OpenAI-compatible route, and GPT-5.6's explicit cache mode.

Usage fields and stream placement as the providers' recordings show them (the oracle tests compare whole
bodies); the numbers follow each provider's rules: DeepSeek 64-token units, DashScope implicit from 256
tokens and explicit ``cache_control`` from 1024, OpenAI explicit breakpoints reported unrounded.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, count_tokens

AUTH = {"Authorization": "Bearer sk-test"}
DEEPSEEK = "/deepseek/chat/completions"
DASHSCOPE = "/compatible-mode/v1/chat/completions"
OPENAI = "/v1/chat/completions"
SYSTEM = " ".join(f"clause{i} binds team {i % 30};" for i in range(300))  # ~1.8k tokens


def sse(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def chat(model: str, question: str, system: Any = SYSTEM, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        **extra,
    }


# ------------------------------------------------------------------------------------------ DeepSeek


def test_deepseek_reports_hit_and_miss_in_64_token_units(client: httpx.Client, emu: Emulator) -> None:
    cold = client.post(DEEPSEEK, json=chat("deepseek-chat", "first"), headers=AUTH).json()
    warm = client.post(DEEPSEEK, json=chat("deepseek-chat", "second"), headers=AUTH).json()
    assert cold["usage"]["prompt_cache_hit_tokens"] == 0
    usage = warm["usage"]
    shared = count_tokens("<|system|>\n" + SYSTEM) + count_tokens("<|user|>")
    assert usage["prompt_cache_hit_tokens"] == shared - shared % 64 == usage["prompt_tokens_details"]["cached_tokens"]
    assert usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"] == usage["prompt_tokens"]
    assert "completion_tokens_details" not in usage and "service_tier" not in warm
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", warm["id"])
    assert warm["system_fingerprint"].endswith("_prod0820_fp8_kvcache")
    assert emu.counters.cached_tokens_by_endpoint == {"deepseek": usage["prompt_cache_hit_tokens"]}
    assert client.post("/deepseek/v1/chat/completions", json=chat("deepseek-chat", "x"), headers=AUTH).is_success


def test_deepseek_stream_puts_usage_on_the_finish_chunk_only_when_asked(client: httpx.Client) -> None:
    asked = sse(
        client.post(
            DEEPSEEK,
            json=chat("deepseek-chat", "q", stream=True, stream_options={"include_usage": True}),
            headers=AUTH,
        ).text
    )
    *chunks, finish, done = asked
    assert done == "[DONE]"
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"]["prompt_cache_miss_tokens"] > 0
    assert all(c["usage"] is None for c in chunks)
    silent = sse(client.post(DEEPSEEK, json=chat("deepseek-chat", "q", stream=True), headers=AUTH).text)
    assert all("usage" not in c for c in silent[:-1])


def test_deepseek_reasoner_sends_reasoning_content_and_counts_it(client: httpx.Client) -> None:
    data = client.post(DEEPSEEK, json=chat("deepseek-reasoner", "why?"), headers=AUTH).json()
    message = data["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == count_tokens(message["reasoning_content"])


def test_deepseek_unknown_model_in_strict_mode(clock: FakeClock) -> None:
    with httpx.Client(transport=Emulator(clock=clock, strict=True).transport(), base_url="http://e") as c:
        r = c.post(DEEPSEEK, json=chat("deepseek-r1", "q"), headers=AUTH)
        ok = c.post(DEEPSEEK, json=chat("deepseek-reasoner", "q"), headers=AUTH)
    assert r.status_code == 400 and ok.status_code == 200
    assert r.json() == {
        "error": {
            "message": "Model Not Exist",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }


# ----------------------------------------------------------------------------------------- DashScope


def test_dashscope_implicit_mode_reports_only_cached_tokens(client: httpx.Client) -> None:
    client.post(DASHSCOPE, json=chat("qwen-plus", "first"), headers=AUTH)
    warm = client.post(DASHSCOPE, json=chat("qwen-plus", "second"), headers=AUTH).json()
    assert set(warm["usage"]["prompt_tokens_details"]) == {"cached_tokens"}
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] > 1024
    assert warm["system_fingerprint"] is None and warm["id"].startswith("chatcmpl-")
    short = " ".join(f"w{i}" for i in range(200))  # below the 256-token implicit minimum
    client.post(DASHSCOPE, json=chat("qwen-plus", "a", system=short), headers=AUTH)
    again = client.post(DASHSCOPE, json=chat("qwen-plus", "b", system=short), headers=AUTH).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_dashscope_cache_control_is_explicit_mode_with_creation_tokens(client: httpx.Client, emu: Emulator) -> None:
    marked = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first = client.post(DASHSCOPE, json=chat("qwen-plus", "first", system=marked), headers=AUTH).json()
    second = client.post(DASHSCOPE, json=chat("qwen-plus", "second", system=marked), headers=AUTH).json()
    prefix = count_tokens("<|system|>\n" + SYSTEM)
    assert first["usage"]["prompt_tokens_details"] == {
        "cache_creation": {"ephemeral_5m_input_tokens": prefix},
        "cache_creation_input_tokens": prefix,
        "cache_type": "ephemeral",
        "cached_tokens": 0,
    }
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == prefix
    assert second["usage"]["prompt_tokens_details"]["cache_creation_input_tokens"] == 0
    assert emu.counters.cache_write_tokens_by_endpoint == {"dashscope": prefix}
    assert emu.counters.cached_tokens_explicit == prefix


def test_dashscope_explicit_entries_live_five_minutes_from_last_use(client: httpx.Client, clock: FakeClock) -> None:
    marked = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]

    def read() -> int:
        data = client.post(DASHSCOPE, json=chat("qwen-plus", "q", system=marked), headers=AUTH).json()
        return int(data["usage"]["prompt_tokens_details"]["cached_tokens"])

    read()
    clock.advance(299)
    assert read() > 0
    clock.advance(299)
    assert read() > 0
    clock.advance(301)
    assert read() == 0


def test_dashscope_stream_usage_rides_a_separate_chunk(client: httpx.Client) -> None:
    events = sse(
        client.post(
            DASHSCOPE, json=chat("qwen-plus", "q", stream=True, stream_options={"include_usage": True}), headers=AUTH
        ).text
    )
    *_, finish, usage_chunk, done = events
    assert done == "[DONE]"
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"] is None
    assert usage_chunk["choices"] == [] and set(usage_chunk["usage"]["prompt_tokens_details"]) == {"cached_tokens"}


# ------------------------------------------------------------------------------------- GPT-5.6 explicit


def _explicit(question: str, **extra: Any) -> dict[str, Any]:
    content = [
        {"type": "text", "text": SYSTEM, "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "text", "text": question},
    ]
    return {
        "model": "gpt-5.6",
        "messages": [{"role": "user", "content": content}],
        "prompt_cache_key": "k",
        "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
        **extra,
    }


def test_gpt56_explicit_breakpoint_writes_then_reads_the_unrounded_prefix(client: httpx.Client, emu: Emulator) -> None:
    first = client.post(OPENAI, json=_explicit("Reply with exactly: OK"), headers=AUTH).json()["usage"]
    second = client.post(OPENAI, json=_explicit("Reply with exactly: OK"), headers=AUTH).json()["usage"]
    prefix = count_tokens("<|user|>\n" + SYSTEM)
    assert prefix % 128 != 0  # the recorded 4012 was not a multiple of 128 either
    assert first["prompt_tokens_details"] == {"audio_tokens": 0, "cache_write_tokens": prefix, "cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"audio_tokens": 0, "cache_write_tokens": 0, "cached_tokens": prefix}
    assert first["prompt_tokens"] == second["prompt_tokens"] > prefix
    assert emu.counters.cache_write_tokens_by_endpoint == {"openai": prefix}


def test_gpt56_explicit_mode_without_breakpoints_caches_nothing(client: httpx.Client) -> None:
    plain = chat("gpt-5.6", "q", prompt_cache_options={"mode": "explicit"})
    client.post(OPENAI, json=plain, headers=AUTH)
    usage = client.post(OPENAI, json=plain, headers=AUTH).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0 == usage["prompt_tokens_details"]["cache_write_tokens"]


def test_gpt56_implicit_mode_reports_writes_and_older_models_do_not(client: httpx.Client) -> None:
    first = client.post(OPENAI, json=chat("gpt-5.6", "one"), headers=AUTH).json()["usage"]
    second = client.post(OPENAI, json=chat("gpt-5.6", "two"), headers=AUTH).json()["usage"]
    assert first["prompt_tokens_details"]["cache_write_tokens"] == first["prompt_tokens"]
    details = second["prompt_tokens_details"]
    assert details["cache_write_tokens"] == second["prompt_tokens"] - details["cached_tokens"]
    older = client.post(OPENAI, json=chat("gpt-5-mini", "three"), headers=AUTH).json()["usage"]
    assert "cache_write_tokens" not in older["prompt_tokens_details"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt_cache_retention": "1h"}, "prompt_cache_retention"),
        ({"prompt_cache_options": {"mode": "manual"}}, "prompt_cache_options.mode"),
        ({"prompt_cache_options": {"mode": "explicit", "ttl": "1h"}}, "prompt_cache_options.ttl"),
        ({"prompt_cache_options": "explicit"}, "prompt_cache_options"),
        ({"prompt_cache_retention": "24h", "prompt_cache_options": {"ttl": "30m"}}, "prompt_cache_retention"),
    ],
)
def test_bad_cache_options_are_400_naming_the_field(client: httpx.Client, extra: dict[str, Any], param: str) -> None:
    r = client.post(OPENAI, json=chat("gpt-5.6", "q", **extra), headers=AUTH)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
