"""The real `ChatDeepSeek` (langchain-deepseek) wrapped with `with_prompt_caching`, on the emulator over HTTP.

DeepSeek's dialect: usage with ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens`` (64-token
units), on the finish chunk of a stream. The handler's cached tokens must equal what the emulator sent.
Writes land when an answer is delivered (``cache_write_on_completion``), as on DeepSeek's disk cache, so
a cold burst misses and the batch warm-up pays.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_deepseek import ChatDeepSeek
from langgraph.checkpoint.memory import InMemorySaver

from cache_integrations.langchain import PromptCachingMiddleware, get_cache_usage_callback, with_prompt_caching
from cache_integrations.langchain._foreign import detect_provider
from cache_integrations.testing import Emulator, FakeClock, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def emu() -> Emulator:
    return Emulator(clock=FakeClock(), cache_write_on_completion=True, strict=True)


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _deepseek(server: RunningServer, model: str = "deepseek-chat") -> ChatDeepSeek:
    return ChatDeepSeek(model=model, api_key="test-key", base_url=server.deepseek_base_url, max_retries=0)


def _sent(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.endpoint == "deepseek"]


def _emulator_reads(emu: Emulator) -> list[int]:
    return [r.usage["prompt_cache_hit_tokens"] for r in _sent(emu) if r.usage]


@tool
def lookup_rule(topic: str) -> str:
    """Look up the style-guide rule for a topic."""
    return f"Rule for {topic}: keep it explicit and tested."


def test_the_wrapper_sees_deepseek_and_sends_no_openai_only_options(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_deepseek(server))
    assert detect_provider(_deepseek(server)) == "deepseek"
    llm.invoke([("human", "hi"), ("system", LONG_SYSTEM_PROMPT)], config={"metadata": {"thread_id": "t-1"}})
    body = _sent(emu)[-1].body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "prompt_cache_key" not in body and "prompt_cache_retention" not in body


def test_invoke_reports_deepseek_hits_equal_to_the_emulator(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_deepseek(server))
    with get_cache_usage_callback() as usage:
        cold = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "first question")])
        warm = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "second question")])
    reads = _emulator_reads(emu)
    assert reads[0] == 0 and reads[1] > 1000 and reads[1] % 64 == 0
    assert cold.usage_metadata is not None and warm.usage_metadata is not None
    assert warm.usage_metadata["input_token_details"]["cache_read"] == reads[1]
    assert [c.usage.cache_read_tokens for c in usage.calls] == reads
    assert usage.total.input_tokens == emu.counters.prompt_tokens
    assert emu.counters.cached_tokens_by_endpoint == {"deepseek": sum(reads)}


def test_stream_carries_usage_from_the_finish_chunk(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_deepseek(server))
    with get_cache_usage_callback() as usage:
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "warm it up")])
        chunks = list(llm.stream([("system", LONG_SYSTEM_PROMPT), ("human", "now stream")]))
    assert _sent(emu)[-1].body["stream_options"] == {"include_usage": True}  # the wrapper asked for usage
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert streamed.usage_metadata is not None
    reads = _emulator_reads(emu)
    assert streamed.usage_metadata["input_token_details"]["cache_read"] == reads[-1] > 0
    assert usage.total.cache_read_tokens == sum(reads) == emu.counters.cached_tokens_implicit


async def test_async_invoke_and_stream(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_deepseek(server))
    with get_cache_usage_callback() as usage:
        await llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
        async for _ in llm.astream([("system", LONG_SYSTEM_PROMPT), ("human", "two")]):
            pass
    assert usage.total.cache_read_tokens == sum(_emulator_reads(emu)) > 0


def test_tools_round_trip(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_deepseek(server)).bind_tools([lookup_rule])
    messages: list[Any] = [("system", LONG_SYSTEM_PROMPT), ("human", "Look up the rule for naming.")]
    with get_cache_usage_callback() as usage:
        call = llm.invoke(messages)
        assert isinstance(call, AIMessage) and call.tool_calls and call.tool_calls[0]["name"] == "lookup_rule"
        result = lookup_rule.invoke(call.tool_calls[0]["args"])
        answer = llm.invoke([*messages, call, ToolMessage(result, tool_call_id=call.tool_calls[0]["id"])])
    assert isinstance(answer.content, str) and answer.content
    assert [c.usage.cache_read_tokens for c in usage.calls] == _emulator_reads(emu)
    assert _emulator_reads(emu)[1] > 0
    assert _sent(emu)[0].body["tools"][0]["function"]["name"] == "lookup_rule"


def test_agent_loop_with_the_middleware_reads_from_the_second_call(emu: Emulator, server: RunningServer) -> None:
    agent = create_agent(
        _deepseek(server),
        [lookup_rule],
        system_prompt=LONG_SYSTEM_PROMPT,
        middleware=[PromptCachingMiddleware()],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "deepseek-agent"}}
    with get_cache_usage_callback() as usage:
        for topic in ("naming", "errors", "tests"):
            agent.invoke({"messages": [("human", f"Look up the rule for {topic}.")]}, config=config)
    bodies = [r.body for r in _sent(emu)]
    assert len(bodies) >= 6 and all("prompt_cache_key" not in b for b in bodies)
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert reads == _emulator_reads(emu)
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert sum(reads) == emu.counters.cached_tokens_by_endpoint["deepseek"]


def _batch() -> list[Any]:
    topics = ["naming", "errors", "typing", "tests", "state", "io", "logging", "secrets", "benchmarks", "docs"]
    return [
        [("system", LONG_SYSTEM_PROMPT), ("human", f"{t} {i}: which rule first?")] for i in range(2) for t in topics
    ]


def test_a_plain_cold_batch_misses_entirely(emu: Emulator, server: RunningServer) -> None:
    emu.hold_answers(20, endpoint="deepseek")
    _deepseek(server).batch(_batch(), config={"max_concurrency": 20})
    assert len(_sent(emu)) == 20 and emu.counters.implicit_cache_hits == 0


def test_a_wrapped_cold_batch_warms_one_and_the_other_nineteen_hit(emu: Emulator, server: RunningServer) -> None:
    with get_cache_usage_callback() as usage:
        answers = with_prompt_caching(_deepseek(server)).batch(_batch(), config={"max_concurrency": 20})
    assert len(answers) == 20
    assert emu.counters.implicit_cache_hits == 19  # DeepSeek has no machines to overflow to
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit == sum(_emulator_reads(emu))
