"""`with_prompt_caching` and `PromptCachingMiddleware` on the real `ChatOpenAI`, against the emulator over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from cache_integrations.langchain import (
    PromptCachingChatModel,
    PromptCachingMiddleware,
    get_cache_usage_callback,
    with_prompt_caching,
)
from cache_integrations.strategies import prompt_cache_key_for
from cache_integrations.testing import Emulator, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _openai(server: RunningServer) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-5-mini", api_key="test-key", base_url=server.openai_base_url, max_retries=0)


@tool
def zeta_lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"Sunny in {city}."


@tool
def alpha_add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Verdict(BaseModel):
    """A review verdict."""

    verdict: str


def _bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.endpoint == "openai" and r.path.endswith("/chat/completions")]


def test_system_first_tools_by_name_and_a_key_per_thread(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai").bind_tools([zeta_lookup, alpha_add])
    config: Any = {"metadata": {"thread_id": "thread-1"}}
    llm.invoke([("human", "What is the weather in Paris?"), ("system", LONG_SYSTEM_PROMPT)], config=config)
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert [t["function"]["name"] for t in body["tools"]] == ["alpha_add", "zeta_lookup"]
    assert body["prompt_cache_key"] == prompt_cache_key_for("thread-1")
    assert body["prompt_cache_key"] != prompt_cache_key_for("thread-2")
    assert "thread-1" not in body["prompt_cache_key"]


def test_the_callers_own_key_wins_and_no_key_without_a_session(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q")], prompt_cache_key="mine")
    assert _bodies(emu)[-1]["prompt_cache_key"] == "mine"
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q")])
    assert "prompt_cache_key" not in _bodies(emu)[-1]


def test_an_openai_compatible_server_gets_the_layout_but_no_openai_only_options(
    emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(_openai(server), retention="24h")  # base URL is not api.openai.com
    llm.invoke([("human", "q"), ("system", LONG_SYSTEM_PROMPT)], config={"metadata": {"thread_id": "t"}})
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "prompt_cache_key" not in body and "prompt_cache_retention" not in body


def test_invoke_stream_and_async_report_the_servers_cached_tokens(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    messages = [("system", LONG_SYSTEM_PROMPT), ("human", "first question")]
    with get_cache_usage_callback() as usage:
        cold = llm.invoke(messages)
        warm = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "second question")])
        chunks = list(llm.stream([("system", LONG_SYSTEM_PROMPT), ("human", "third question")]))
    assert cold.usage_metadata is not None and warm.usage_metadata is not None
    assert cold.usage_metadata["input_token_details"]["cache_read"] == 0
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert streamed.usage_metadata is not None  # the wrapper asked ChatOpenAI for stream usage
    reported = [cold, warm, streamed]
    assert sum(m.usage_metadata["input_token_details"]["cache_read"] for m in reported) == (  # type: ignore[index]
        emu.counters.cached_tokens_implicit
    )
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit > 0
    assert usage.total.input_tokens == emu.counters.prompt_tokens


async def test_async_invoke_and_stream(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    config: Any = {"metadata": {"session_id": "s-9"}}
    await llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")], config=config)
    chunks = [c async for c in llm.astream([("system", LONG_SYSTEM_PROMPT), ("human", "two")], config=config)]
    assert sum(len(str(c.content)) for c in chunks) > 0
    assert [b["prompt_cache_key"] for b in _bodies(emu)] == [prompt_cache_key_for("s-9")] * 2
    assert emu.counters.cached_tokens_implicit > 0


def test_bind_tools_and_structured_output_go_through_the_caching_layer(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    config: Any = {"metadata": {"thread_id": "t-tools"}}
    calls = llm.bind_tools([zeta_lookup, alpha_add]).invoke(
        [("system", LONG_SYSTEM_PROMPT), ("human", "weather in Oslo")], config=config
    )
    assert calls.tool_calls and calls.tool_calls[0]["name"] in {"zeta_lookup", "alpha_add"}
    parsed = llm.with_structured_output(Verdict).invoke(
        [("system", LONG_SYSTEM_PROMPT), ("human", "verdict please")], config=config
    )
    assert isinstance(parsed, Verdict)
    assert [b.get("prompt_cache_key") for b in _bodies(emu)] == [prompt_cache_key_for("t-tools")] * 2


def test_agent_loop_with_the_middleware_reads_the_cache_from_the_second_call(
    emu: Emulator, server: RunningServer
) -> None:
    agent = create_agent(
        _openai(server),
        [zeta_lookup, alpha_add],
        system_prompt=LONG_SYSTEM_PROMPT,
        middleware=[PromptCachingMiddleware(provider="openai")],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "agent-7"}}
    with get_cache_usage_callback() as usage:
        for question in ["Weather in Paris?", "Weather in Rome?", "Add 2 and 3"]:
            agent.invoke({"messages": [("human", question)]}, config=config)
    bodies = _bodies(emu)
    assert len(bodies) >= 6  # each question: a tool call, then the answer
    assert {b["prompt_cache_key"] for b in bodies} == {prompt_cache_key_for("agent-7")}
    assert all([t["function"]["name"] for t in b["tools"]] == ["alpha_add", "zeta_lookup"] for b in bodies)
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert sum(reads) == emu.counters.cached_tokens_implicit


def test_the_middleware_leaves_unknown_models_untouched_with_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    model = FakeListChatModel(responses=["one", "two"])
    agent = create_agent(model, [], middleware=[PromptCachingMiddleware()])
    with caplog.at_level(logging.DEBUG, logger="cache_integrations.langchain"):
        agent.invoke({"messages": [("human", "hi")]})
        agent.invoke({"messages": [("human", "again")]})
    lines = [r for r in caplog.records if "no strategy for FakeListChatModel" in r.getMessage()]
    assert len(lines) == 1


def test_wrapping_is_idempotent_and_rejects_what_is_not_a_chat_model(server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server))
    assert with_prompt_caching(llm) is llm
    assert isinstance(llm, PromptCachingChatModel)
    with pytest.raises(ValueError, match="expected a LangChain BaseChatModel"):
        with_prompt_caching("gpt-5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="provider: 'opnai' is not one of"):
        with_prompt_caching(_openai(server), provider="opnai")


def test_the_middleware_passes_this_packages_own_models_through_and_they_cache(
    emu: Emulator, server: RunningServer
) -> None:
    from cache_integrations.langchain import ChatGLM

    glm = ChatGLM(model="glm-4.7", api_key="test-key", base_url=server.glm_base_url, max_retries=0)
    agent = create_agent(
        glm,
        [zeta_lookup, alpha_add],
        system_prompt=LONG_SYSTEM_PROMPT,
        middleware=[PromptCachingMiddleware()],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "glm-agent"}}
    with get_cache_usage_callback() as usage:
        for question in ["Weather in Paris?", "Weather in Rome?", "Add 2 and 3"]:
            agent.invoke({"messages": [("human", question)]}, config=config)
    glm_bodies = [r.body for r in emu.requests if r.endpoint == "glm"]
    assert len(glm_bodies) >= 6
    assert all("prompt_cache_key" not in b for b in glm_bodies)  # GLM takes no OpenAI-only fields
    assert all([t["function"]["name"] for t in b["tools"]] == ["alpha_add", "zeta_lookup"] for b in glm_bodies)
    reads = [c.usage.cache_read_tokens for c in usage.calls if c.usage is not None]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert sum(reads) == emu.counters.cached_tokens_implicit
    assert usage.total.saved is not None and usage.total.saved > 0
