"""The emulator's OpenAI, DeepSeek and DashScope answers against hand-copied real bodies.

Same rule as ``test_emulator_oracle.py``: the same keys with the same JSON types as the recordings,
nothing the providers never send; differences allowed below are each justified by another recording.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, OpenAIPhysics

from . import load
from .test_emulator_oracle import assert_same_shape

AUTH = {"Authorization": "Bearer oracle-key"}
CATALOGUE = "Reference catalogue for the prompt cache test corpus.\n" + "\n".join(
    f"Entry {i:04d}: shelf {i % 7}, aisle {i % 3}, volume {i % 11}, catalogued under subject h{i}." for i in range(180)
)
# The 2026-02 gpt-4.1-nano answer (vercel/ai packages/openai/src/chat/__fixtures__/openai-text.json) has
# "logprobs": null in each choice; the 2026-07 gpt-5.6 one does not. The emulator sends it for every model.
OPENAI_EXTRA = {"choices[].logprobs"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather information for a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.fixture
def client() -> httpx.Client:
    return httpx.Client(
        transport=Emulator(clock=FakeClock(), openai_physics=OpenAIPhysics()).transport(), base_url="http://e"
    )


def _events(text: str) -> list[Any]:
    return [e if e == "[DONE]" else json.loads(e) for e in re.findall(r"^data: (.*)$", text, re.MULTILINE)]


def test_gpt56_explicit_breakpoint_write_then_read(client: httpx.Client) -> None:
    oracle = load("openai_gpt56_explicit_cache")
    request = json.loads(json.dumps(oracle["request"]))
    request["messages"][0]["content"][0]["text"] = CATALOGUE
    first, second = (client.post("/v1/chat/completions", json=request, headers=AUTH).json() for _ in range(2))
    real_first, real_second = oracle["bodies"]
    assert_same_shape(first, real_first, extra=OPENAI_EXTRA)
    assert_same_shape(second, real_second, extra=OPENAI_EXTRA)
    for emulated, real in ((first, real_first), (second, real_second)):
        assert list(emulated["usage"]["prompt_tokens_details"]) == list(real["usage"]["prompt_tokens_details"])
        assert emulated["system_fingerprint"] is None is real["system_fingerprint"]
    # As recorded: write the breakpoint's prefix, then read exactly it; the prompt is a few tokens longer.
    written = first["usage"]["prompt_tokens_details"]["cache_write_tokens"]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == written
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cache_write_tokens"] == 0
    assert 0 < first["usage"]["prompt_tokens"] - written < 16


def test_pre_56_implicit_usage_shape_and_128_steps(client: httpx.Client) -> None:
    oracle = load("openai_implicit_cache_usage")
    body = {
        "model": "gpt-5-nano",
        "max_completion_tokens": 16,
        "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": CATALOGUE}],
    }
    cold, warm = (client.post("/v1/chat/completions", json=body, headers=AUTH).json()["usage"] for _ in range(2))
    assert_same_shape(cold, oracle["usage_cold"])
    assert_same_shape(warm, oracle["usage_warm"])
    for prompt, cached in [
        *oracle["cached_counts"],
        (warm["prompt_tokens"], warm["prompt_tokens_details"]["cached_tokens"]),
    ]:
        assert cached % 128 == 0 and 1024 <= cached <= prompt


def test_deepseek_body_and_stream_have_the_recorded_shape() -> None:
    oracle = load("deepseek_chat_usage")
    emu = Emulator(clock=FakeClock())
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        request = {
            "model": "deepseek-reasoner",
            "messages": [{"role": "user", "content": "What is the weather in San Francisco? " + CATALOGUE}],
            "tools": [WEATHER],
        }
        c.post("/deepseek/chat/completions", json=request, headers=AUTH)
        body = c.post("/deepseek/chat/completions", json=request, headers=AUTH).json()
        stream = {
            "model": "deepseek-chat",
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        events = _events(c.post("/deepseek/chat/completions", json=stream, headers=AUTH).text)
    real = oracle["body"]
    assert_same_shape(body, real)
    assert list(body) == list(real) and list(body["usage"]) == list(real["usage"])
    usage = body["usage"]
    assert usage["prompt_cache_hit_tokens"] > 0 and usage["prompt_cache_hit_tokens"] % 64 == 0
    real_first, real_middle, real_finish = oracle["sse_events"]
    assert events[-1] == "[DONE]"
    assert_same_shape(events[0], real_first)
    assert_same_shape(events[1], real_middle)
    assert_same_shape(events[-2], real_finish)
    assert list(events[-2]) == list(real_finish)


def test_dashscope_body_and_stream_have_the_recorded_shape() -> None:
    oracle = load("dashscope_compat_usage")
    emu = Emulator(clock=FakeClock())
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        request = {
            "model": "qwen3-max",
            "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": [WEATHER],
        }
        body = c.post("/compatible-mode/v1/chat/completions", json=request, headers=AUTH).json()
        stream = {
            "model": "qwen3-max",
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        events = _events(c.post("/compatible-mode/v1/chat/completions", json=stream, headers=AUTH).text)
        marked = {
            "model": "qwen3-max",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": CATALOGUE, "cache_control": {"type": "ephemeral"}}],
                },
                {"role": "user", "content": "Which shelf holds entry 0042?"},
            ],
        }
        explicit = c.post("/compatible-mode/v1/chat/completions", json=marked, headers=AUTH).json()
    real = oracle["body"]
    assert_same_shape(body, real)
    assert list(body) == list(real)
    real_first, real_finish, real_usage = oracle["sse_events"]
    assert events[-1] == "[DONE]"
    assert_same_shape(events[0], real_first)
    assert_same_shape(events[-3], real_finish)
    assert_same_shape(events[-2], real_usage)
    documented = oracle["explicit_usage_doc"]["prompt_tokens_details"]
    # text_tokens appears in Alibaba's documented example only; the emulator leaves it out.
    assert_same_shape(explicit["usage"]["prompt_tokens_details"], documented, missing={"text_tokens"})
