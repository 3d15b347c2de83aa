"""OpenTelemetry spans of LlamaIndex calls: this package's GLM and Gemini, and the hook for foreign LLMs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.llms.openai import OpenAI

from cache_integrations.llama_index.observe import (
    finish_llama_index_response,
    observe_llama_index_call,
    observed_llama_index_stream,
)
from cache_integrations.testing import Emulator, FakeClock, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from ..llama_index.conftest import make_gemini, make_glm
from .conftest import Telemetry


def _messages(question: str) -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=LONG_SYSTEM_PROMPT),
        ChatMessage(role=MessageRole.USER, content=question),
    ]


def _attrs(telemetry: Telemetry, i: int) -> dict[str, Any]:
    return dict(telemetry.spans[i].attributes or {})


def test_glm_chat_stream_and_async_give_one_span_each(telemetry: Telemetry, emu: Emulator) -> None:
    llm = make_glm(emu, model="glm-4.6", instrument=telemetry.instrumentation())
    llm.chat(_messages("q1"))
    llm.chat(_messages("q2"))
    for _ in llm.stream_chat(_messages("q3")):
        pass

    async def run() -> None:
        await llm.achat(_messages("q4"))
        async for _ in await llm.astream_chat(_messages("q5")):
            pass

    asyncio.run(run())
    spans = telemetry.spans
    assert [s.name for s in spans] == ["chat glm-4.6"] * 5
    cached = [_attrs(telemetry, i)["gen_ai.usage.cache_read.input_tokens"] for i in range(5)]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert sum(cached) == emu.counters.cached_tokens
    assert telemetry.token_sum("cache_read") == emu.counters.cached_tokens


def test_gemini_explicit_cache_creation_and_reuse(telemetry: Telemetry) -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock)
    inst = telemetry.instrumentation()
    llm = make_gemini(emu, clock, model="gemini-2.5-flash", cache_mode="always", instrument=inst)
    llm.chat(_messages("q1"))
    llm.chat(_messages("q2"))
    created, reused = (_attrs(telemetry, i) for i in range(2))
    assert telemetry.spans[0].name == "generate_content gemini-2.5-flash"
    assert created["gen_ai.provider.name"] == "gcp.gemini"
    assert created["cache_integrations.cache.created"] is True
    assert created["cache_integrations.cache.name"].startswith("cachedContents/")
    assert created["cache_integrations.storage.token_hours"] > 0
    assert created["cache_integrations.storage.usd"] > 0
    assert created["gen_ai.usage.cache_creation.input_tokens"] > 0
    assert reused["cache_integrations.cache.created"] is False
    assert reused["cache_integrations.cache.name"] == created["cache_integrations.cache.name"]
    # the creating call already reads its prompt from the new cache
    reads = [a["gen_ai.usage.cache_read.input_tokens"] for a in (created, reused)]
    assert sum(reads) == emu.counters.cached_tokens_explicit and all(r > 0 for r in reads)
    assert emu.counters.caches_created == 1


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_the_hook_for_foreign_llms(telemetry: Telemetry, emu: Emulator, server: RunningServer) -> None:
    llm = OpenAI(model="gpt-4o-mini", api_key="test-key", api_base=server.openai_base_url, max_retries=0)
    inst = telemetry.instrumentation()
    for question in ("q1", "q2"):
        messages = _messages(question)
        obs = observe_llama_index_call(inst, llm, messages)
        with obs.active():
            response = llm.chat(messages)
        facts = finish_llama_index_response(obs, response, llm)
        assert facts is not None and facts.model.startswith("gpt-4o-mini")
    second = _attrs(telemetry, 1)
    assert telemetry.spans[1].name == "chat gpt-4o-mini"
    assert second["gen_ai.provider.name"] == "openai"
    assert second["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens > 0

    messages = _messages("q3")
    obs = observe_llama_index_call(inst, llm, messages)
    chunks = list(observed_llama_index_stream(obs, llm.stream_chat(messages), llm))
    assert chunks and len(telemetry.spans) == 3  # ended with the stream


def test_with_prompt_caching_instrument_gives_one_span_per_call(
    telemetry: Telemetry, emu: Emulator, server: RunningServer
) -> None:
    from cache_integrations.llama_index import with_prompt_caching

    base = OpenAI(model="gpt-4o-mini", api_key="test-key", api_base=server.openai_base_url, max_retries=0)
    llm = with_prompt_caching(base, instrument=telemetry.instrumentation())
    llm.chat(_messages("q1"))
    llm.chat(_messages("q2"))
    chunks = list(llm.stream_chat(_messages("q3")))
    asyncio.run(llm.achat(_messages("q4")))
    assert chunks and len(telemetry.spans) == 4
    assert all(s.name == "chat gpt-4o-mini" for s in telemetry.spans)
    cached = [dict(s.attributes or {})["gen_ai.usage.cache_read.input_tokens"] for s in telemetry.spans]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert sum(cached) == emu.counters.cached_tokens
    # not instrumented: no span
    plain = with_prompt_caching(base, instrument=False)
    plain.chat(_messages("q5"))
    assert len(telemetry.spans) == 4


def test_a_googlegenai_with_managed_caches_gives_a_span_per_call_naming_its_cache(
    telemetry: Telemetry, emu: Emulator, server: RunningServer
) -> None:
    from llama_index.llms.google_genai import GoogleGenAI

    from cache_integrations.llama_index import with_prompt_caching

    base = GoogleGenAI(
        model="gemini-2.5-flash",
        api_key="gemini-otel-secret-1",
        max_tokens=256,
        context_window=1_048_576,
        http_options={"base_url": server.url, "api_version": "v1beta"},
    )
    llm = with_prompt_caching(
        base, cache_mode="always", cache_registry="memory", instrument=telemetry.instrumentation()
    )
    llm.chat(_messages("q1"))
    chunks = list(llm.stream_chat(_messages("q2")))
    assert chunks and len(telemetry.spans) == 2
    first, second = _attrs(telemetry, 0), _attrs(telemetry, 1)
    assert first["gen_ai.provider.name"] == "gcp.gemini"
    assert first["cache_integrations.cache.created"] is True
    assert second["cache_integrations.cache.name"] == first["cache_integrations.cache.name"]
    assert second["gen_ai.usage.cache_read.input_tokens"] > 0
