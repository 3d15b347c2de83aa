"""ChatGLM against recorded GLM traffic: caching must be reported exactly as the server's usage says.

Each test has its own cassette with `allow_playback_repeats=False`, so a repeated request replays the
second recorded response (the cache hit), not the first one again.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk

from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

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
def test_second_call_reads_the_cache_invoke_and_stream() -> None:
    llm = ChatGLM(**PARAMS)
    with get_cache_usage_callback() as usage:
        first = llm.invoke(PROMPT)
        second = llm.invoke(PROMPT)
        streamed = _stream(llm, PROMPT)
    assert first.usage_metadata and second.usage_metadata and streamed.usage_metadata
    cold = first.usage_metadata["input_token_details"]["cache_read"]
    warm = second.usage_metadata["input_token_details"]["cache_read"]
    assert warm > cold and warm > 1000  # the long system prompt came from the cache
    # stream and invoke of the same warm request report the same usage
    assert streamed.usage_metadata == second.usage_metadata
    assert streamed.response_metadata["model_name"] == "glm-4.7"
    assert streamed.response_metadata["prefix_fingerprint"] == second.response_metadata["prefix_fingerprint"]
    totals = usage.by_model["glm-4.7"]
    assert totals.calls == 3
    assert totals.cache_read_tokens == cold + 2 * warm
    assert totals.input_tokens == sum(m.usage_metadata["input_tokens"] for m in (first, second, streamed))
    assert totals.saved is not None and totals.saved > 0


@pytest.mark.vcr(allow_playback_repeats=False)
def test_tool_round_trip_keeps_the_prefix_cached() -> None:
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
    assert first.usage_metadata and second.usage_metadata
    # The whole first request (system, tools, question) was served from cache on the second call.
    assert second.usage_metadata["input_token_details"]["cache_read"] >= first.usage_metadata["input_tokens"] - 5
