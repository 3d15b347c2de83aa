"""LangSmith sees each call's cache facts: LangChain's own `LangChainTracer` with a `langsmith.Client` that
records the runs it would send (create_run / update_run) in memory instead of over the network."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tracers.langchain import LangChainTracer
from langchain_openai import ChatOpenAI
from langsmith import Client

from cache_integrations.langchain import with_prompt_caching
from cache_integrations.testing import Emulator, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import chat_glm

FACT_KEYS = {
    "provider",
    "input_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "hit_rate",
    "cost_usd",
    "cost_without_caching_usd",
    "saved_usd",
    "storage_usd",
    "storage_token_hours",
}


class RecordingClient(Client):
    """A LangSmith client that keeps the run payloads it would upload."""

    def __init__(self) -> None:
        super().__init__(api_key="ls-test", api_url="http://127.0.0.1:9", auto_batch_tracing=False)
        self.created: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []

    def create_run(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.created.append(kwargs)

    def update_run(self, run_id: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.updated.append({"run_id": run_id, **kwargs})

    def llm_runs(self) -> list[dict[str, Any]]:
        return [u for u in self.updated if u.get("run_type") == "llm"]


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


def _chat(question: str) -> list[tuple[str, str]]:
    return [("system", LONG_SYSTEM_PROMPT), ("human", question)]


def _message_kwargs(run: dict[str, Any]) -> dict[str, Any]:
    generation = run["outputs"]["generations"][0][0]
    kwargs: dict[str, Any] = generation["message"]["kwargs"]
    return kwargs


def test_chatglm_runs_carry_the_facts_in_metadata_and_outputs(client: RecordingClient, emu: Emulator) -> None:
    tracer = LangChainTracer(client=client, project_name="cache-tests")
    llm = chat_glm(emu, model="glm-4.7")
    llm.invoke(_chat("q1"), config={"callbacks": [tracer]})
    llm.invoke(_chat("q2"), config={"callbacks": [tracer]})
    tracer.wait_for_futures()

    first, second = client.llm_runs()
    metadata = second["extra"]["metadata"]
    assert metadata["cache_integrations.cached_tokens"] == emu.counters.cached_tokens > 0
    assert metadata["cache_integrations.saved_usd"] > 0
    assert first["extra"]["metadata"]["cache_integrations.cached_tokens"] == 0
    # LangSmith's own usage record agrees with ours
    assert metadata["usage_metadata"]["input_token_details"]["cache_read"] == emu.counters.cached_tokens
    assert metadata["ls_provider"] == "zhipuai" and metadata["ls_model_name"] == "glm-4.7"
    facts = _message_kwargs(second)["response_metadata"]["cache_integrations"]
    assert set(facts) == FACT_KEYS
    assert facts["cached_tokens"] == emu.counters.cached_tokens
    assert facts["cost_usd"] < facts["cost_without_caching_usd"]


def test_async_and_batch_runs_too(client: RecordingClient, emu: Emulator) -> None:
    tracer = LangChainTracer(client=client, project_name="cache-tests")
    llm = chat_glm(emu, model="glm-4.7")
    llm.invoke(_chat("warm"), config={"callbacks": [tracer]})
    llm.batch([_chat("b1"), _chat("b2")], config={"callbacks": [tracer]})
    asyncio.run(llm.ainvoke(_chat("a1"), config={"callbacks": [tracer]}))
    tracer.wait_for_futures()
    runs = client.llm_runs()
    assert len(runs) == 4
    cached = [r["extra"]["metadata"]["cache_integrations.cached_tokens"] for r in runs]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert sum(cached) == emu.counters.cached_tokens


def test_a_streamed_run_carries_the_facts_in_its_outputs(client: RecordingClient, emu: Emulator) -> None:
    tracer = LangChainTracer(client=client, project_name="cache-tests")
    llm = chat_glm(emu, model="glm-4.7")
    llm.invoke(_chat("q1"))
    for _ in llm.stream(_chat("q2"), config={"callbacks": [tracer]}):
        pass
    tracer.wait_for_futures()
    (run,) = client.llm_runs()
    facts = _message_kwargs(run)["response_metadata"]["cache_integrations"]
    assert facts["cached_tokens"] == emu.counters.cached_tokens > 0


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_a_wrapped_chatopenai_run_carries_the_facts(
    client: RecordingClient, emu: Emulator, server: RunningServer
) -> None:
    tracer = LangChainTracer(client=client, project_name="cache-tests")
    base = ChatOpenAI(model="gpt-5-mini", api_key="test-key", base_url=server.openai_base_url, max_retries=0)
    llm = with_prompt_caching(base, provider="openai")
    llm.invoke(_chat("q1"), config={"callbacks": [tracer]})
    llm.invoke(_chat("q2"), config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    runs = client.llm_runs()
    assert len(runs) == 2
    metadata = runs[1]["extra"]["metadata"]
    assert metadata["cache_integrations.cached_tokens"] == emu.counters.cached_tokens > 0
    assert metadata["usage_metadata"]["input_token_details"]["cache_read"] == emu.counters.cached_tokens
    facts = _message_kwargs(runs[1])["response_metadata"]["cache_integrations"]
    assert facts["cached_tokens"] == emu.counters.cached_tokens
    assert facts["cost_usd"] is not None and facts["saved_usd"] > 0  # gpt-5-mini has a known price
