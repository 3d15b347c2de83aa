"""ChatGLM against cassettes in GLM's wire format: caching must be reported exactly as the server's usage says.

The cassettes are emulator recordings (tests/cassettes/README.md). Each test has its own cassette with
`allow_playback_repeats=False`, so a repeated request replays the second recorded response (the cache
hit), not the first one again. Expected numbers are read from the recorded responses (`cassette`
fixture), never taken from the library's own output.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk

from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

from ..wire import Cassette, assert_glm_reported, glm_cached
from .long_prompt import LONG_SYSTEM_PROMPT

PARAMS: dict[str, Any] = {"model": "glm-4.7", "api_key": os.environ.get("ZHIPUAI_API_KEY", "cassette-replay")}
PROMPT = [("system", LONG_SYSTEM_PROMPT), ("human", "Name the three most important rules.")]


def _stream(llm: ChatGLM, input_: Any) -> AIMessage:
    full: BaseMessageChunk | None = None
    for chunk in llm.stream(input_):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


@pytest.mark.vcr(allow_playback_repeats=False)
def test_second_call_reads_the_cache_invoke_and_stream(cassette: Cassette) -> None:
    llm = ChatGLM(**PARAMS)
    with get_cache_usage_callback() as usage:
        first = llm.invoke(PROMPT)
        second = llm.invoke(PROMPT)
        streamed = _stream(llm, PROMPT)
    sent = [cassette.usage(m.response_metadata["id"]) for m in (first, second, streamed)]
    for message, wire in zip((first, second, streamed), sent, strict=True):
        assert_glm_reported(message.usage_metadata, wire)  # each number exactly as the server sent it
    assert glm_cached(sent[1]) > glm_cached(sent[0])  # the recording: the long system prompt came from the cache
    assert streamed.response_metadata["model_name"] == "glm-4.7"
    assert streamed.response_metadata["prefix_fingerprint"] == second.response_metadata["prefix_fingerprint"]
    totals = usage.by_model["glm-4.7"]
    assert totals.calls == 3
    assert totals.cache_read_tokens == sum(glm_cached(w) for w in sent)
    assert totals.input_tokens == sum(w["prompt_tokens"] for w in sent)
    assert totals.output_tokens == sum(w["completion_tokens"] for w in sent)
    assert totals.saved is not None and totals.saved > 0


@pytest.mark.vcr(allow_playback_repeats=False)
def test_tool_round_trip_keeps_the_prefix_cached(cassette: Cassette) -> None:
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return f"Sunny in {city}"

    llm = ChatGLM(**PARAMS).bind_tools([get_weather])
    history: list[Any] = [("system", LONG_SYSTEM_PROMPT), ("human", "What is the weather in Florence?")]
    first = llm.invoke(history)
    assert isinstance(first, AIMessage)
    (call,) = first.tool_calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_") and isinstance(call["args"], dict)
    history += [first, {"role": "tool", "content": get_weather(**call["args"]), "tool_call_id": call["id"]}]
    second = llm.invoke(history)
    assert isinstance(second.content, str) and second.content
    sent_first, sent_second = (cassette.usage(m.response_metadata["id"]) for m in (first, second))
    assert_glm_reported(first.usage_metadata, sent_first)
    assert_glm_reported(second.usage_metadata, sent_second)
    # The recording: the whole first request (system, tools, question) was served from cache on the second call.
    assert glm_cached(sent_second) >= sent_first["prompt_tokens"] - 5
