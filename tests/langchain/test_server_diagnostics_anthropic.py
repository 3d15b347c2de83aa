"""Anthropic's own cache diagnostics through the real `ChatAnthropic`, asked by `with_prompt_caching` and
`PromptCachingMiddleware` (``server_diagnostics=True``), answered by the emulator, read by the handler."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from cache_integrations.langchain import PromptCachingMiddleware, get_cache_usage_callback, with_prompt_caching
from cache_integrations.testing import Emulator, RunningServer

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

MODEL = "claude-sonnet-4-6"
BETA = "cache-diagnosis-2026-04-07"
SYSTEM = " ".join(f"Rule {i}: answer carefully and cite the tool output." for i in range(150))


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def chat(server: RunningServer, **kwargs: Any) -> ChatAnthropic:
    return ChatAnthropic(
        model=MODEL, api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0, **kwargs
    )


def sent(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.endpoint == "anthropic" and r.path == "/v1/messages"]


def _timestamped(i: int) -> list[tuple[str, str]]:
    now = datetime.datetime(2026, 11, 22, 9, 0, i).isoformat()
    return [("system", f"Current time: {now}\n{SYSTEM}"), ("human", f"Question {i}")]


def test_a_timestamp_in_the_system_prompt_is_explained_by_anthropic_too(
    emu: Emulator, server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    llm = with_prompt_caching(chat(server), server_diagnostics=True)
    trace = tmp_path / "trace.jsonl"
    with get_cache_usage_callback(trace=trace) as usage:
        replies = [llm.invoke(_timestamped(i)) for i in range(3)]
    requests = sent(emu)
    assert all(BETA in r.headers["anthropic-beta"].split(",") for r in requests)
    ids = [r.response_metadata["id"] for r in replies]
    assert [r.body["diagnostics"] for r in requests] == [
        {"previous_message_id": None},
        {"previous_message_id": ids[0]},
        {"previous_message_id": ids[1]},
    ]
    first, *rest = usage.diagnoses
    assert first.cause is None and first.provider_reason is None
    for d in rest:
        assert (d.cause, d.message_index, d.char_offset) == ("volatile_content", 0, len("Current time: "))
        assert d.provider_reason == "system_changed" and d.provider_missed_tokens is not None
        assert d.provider_missed_tokens > 1500
        assert "Anthropic's cache diagnostics: system_changed" in d.detail
    [warning] = [r.getMessage() for r in caplog.records if "prompt cache miss" in r.getMessage()]
    assert "Anthropic's cache diagnostics: system_changed" in warning
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [line["provider_reason"] for line in lines] == [None, "system_changed", "system_changed"]


def test_without_the_option_nothing_is_asked(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server))
    with get_cache_usage_callback() as usage:
        for i in range(2):
            llm.invoke(_timestamped(i))
    assert all("diagnostics" not in r.body and "anthropic-beta" not in r.headers for r in sent(emu))
    assert usage.diagnoses[1].cause == "volatile_content" and usage.diagnoses[1].provider_reason is None


def test_the_callers_betas_are_kept(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server, betas=["extended-cache-ttl-2025-04-11"]), server_diagnostics=True)
    llm.invoke(_timestamped(0))
    llm.invoke(_timestamped(1), betas=["token-efficient-tools-2025-02-19"])  # a call-time list replaces the model's
    headers = [set(r.headers["anthropic-beta"].split(",")) for r in sent(emu)]
    assert headers == [{"extended-cache-ttl-2025-04-11", BETA}, {"token-efficient-tools-2025-02-19", BETA}]


def test_a_call_after_a_stream_opts_in_afresh(emu: Emulator, server: RunningServer) -> None:
    # langchain-anthropic keeps neither the message_start id nor its diagnostics on a stream.
    llm = with_prompt_caching(chat(server), server_diagnostics=True)
    first = llm.invoke(_timestamped(0))
    chunks = list(llm.stream(_timestamped(1)))
    llm.invoke(_timestamped(2))
    assert chunks and [r.body["diagnostics"]["previous_message_id"] for r in sent(emu)] == [
        None,
        first.response_metadata["id"],
        None,
    ]


async def test_async_calls_name_the_previous_answer(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server), server_diagnostics=True)
    with get_cache_usage_callback() as usage:
        first = await llm.ainvoke(_timestamped(0))
        await llm.ainvoke(_timestamped(1))
    assert sent(emu)[1].body["diagnostics"] == {"previous_message_id": first.response_metadata["id"]}
    assert usage.diagnoses[1].provider_reason == "system_changed"


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}, 24 C"


def test_the_middleware_chains_each_thread_on_its_own(emu: Emulator, server: RunningServer) -> None:
    agent = create_agent(
        chat(server),
        [get_weather],
        system_prompt=SYSTEM,
        middleware=[PromptCachingMiddleware(server_diagnostics=True)],
    )
    answers = []
    with get_cache_usage_callback() as usage:
        for thread in ("t-1", "t-2"):
            state = agent.invoke(
                {"messages": [HumanMessage("Weather in Oslo?")]}, {"configurable": {"thread_id": thread}}
            )
            answers += [m.response_metadata["id"] for m in state["messages"] if m.type == "ai"]
    requests = sent(emu)
    assert len(requests) == 4 and len(answers) == 4  # a tool call and the answer, per thread
    previous = [r.body["diagnostics"]["previous_message_id"] for r in requests]
    # each thread's first call opts in afresh (the same question, yet another thread), its second names its first
    assert previous == [None, answers[0], None, answers[2]]
    assert all(d.provider_reason is None for d in usage.diagnoses)  # the agent appends: nothing diverged
