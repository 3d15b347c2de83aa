"""OpenTelemetry spans and metrics of LangChain model calls, on the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from cache_integrations import InsufficientBalanceError
from cache_integrations.langchain import PromptCachingMiddleware, with_prompt_caching
from cache_integrations.otel import instrument
from cache_integrations.testing import Emulator, RunningServer
from cache_integrations.testing.faults import glm_insufficient_balance

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import SECRET, Telemetry, chat_glm

PROMPT_MARK = "meticulous senior code reviewer"  # a phrase of the system prompt: must never reach a span


def _chat(question: str) -> list[tuple[str, str]]:
    return [("system", LONG_SYSTEM_PROMPT), ("human", question)]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _only_model_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if "gen_ai.operation.name" in (s.attributes or {})]


def test_two_calls_sharing_a_prompt_give_two_spans_the_second_with_cache_reads(
    telemetry: Telemetry, emu: Emulator
) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    llm.invoke(_chat("q1"))
    assert emu.counters.cached_tokens == 0
    reply = llm.invoke(_chat("q2"))

    first, second = telemetry.spans
    assert second.name == "chat glm-4.7" and second.kind is SpanKind.CLIENT
    attrs = _attrs(second)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens > 0
    assert _attrs(first)["gen_ai.usage.cache_read.input_tokens"] == 0
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "zhipu_ai"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "glm-4.7"
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage_metadata["input_tokens"]  # type: ignore[index]
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage_metadata["output_tokens"]  # type: ignore[index]
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["server.address"] == "emulator" and attrs["server.port"] == 80
    assert attrs["cache_integrations.saved.usd"] > 0
    assert attrs["cache_integrations.cost.usd"] < attrs["cache_integrations.cost_without_caching.usd"]
    # the same facts the message carries for LangSmith
    facts = reply.response_metadata["cache_integrations"]
    assert facts["cached_tokens"] == attrs["gen_ai.usage.cache_read.input_tokens"]
    assert facts["saved_usd"] == pytest.approx(attrs["cache_integrations.saved.usd"])


def test_token_usage_histogram_has_the_cache_token_types(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    llm.invoke(_chat("q1"))
    llm.invoke(_chat("q2"))
    assert telemetry.token_sum("input") == emu.counters.prompt_tokens
    assert telemetry.token_sum("output") == emu.counters.completion_tokens
    assert telemetry.token_sum("cache_read") == emu.counters.cached_tokens > 0
    assert telemetry.token_sum("cache_creation") == 0
    _, _, attrs = telemetry.token_points()[0]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "zhipu_ai"
    assert attrs["gen_ai.request.model"] == "glm-4.7"


def test_a_stream_emits_its_span_when_it_ends(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    llm.invoke(_chat("q1"))
    chunks = llm.stream(_chat("q2"))
    next(chunks)
    assert len(telemetry.spans) == 1  # the streaming call's span is still open
    full = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    spans = telemetry.spans
    assert len(spans) == 2
    assert _attrs(spans[1])["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens > 0
    assert full is not None and full.response_metadata["cache_integrations"]["cached_tokens"] > 0


def test_an_async_call_and_an_async_stream(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())

    async def run() -> None:
        await llm.ainvoke(_chat("q1"))
        await llm.ainvoke(_chat("q2"))
        async for _ in llm.astream(_chat("q3")):
            pass

    asyncio.run(run())
    spans = telemetry.spans
    assert len(spans) == 3
    cached = [_attrs(s)["gen_ai.usage.cache_read.input_tokens"] for s in spans]
    assert cached[0] == 0 and cached[1] > 0 and cached[2] > 0
    assert sum(cached) == emu.counters.cached_tokens


def test_spans_nest_under_the_callers_span_for_invoke_batch_and_async(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as parent:
        llm.invoke(_chat("q1"))
        llm.batch([_chat(f"batch {i}") for i in range(3)], config={"max_concurrency": 3})

        async def run() -> None:
            await asyncio.gather(llm.ainvoke(_chat("a1")), llm.ainvoke(_chat("a2")))

        asyncio.run(run())
    model_spans = _only_model_spans(telemetry.spans)
    assert len(model_spans) == 6
    parent_id = parent.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == parent_id for s in model_spans)
    assert len({s.context.trace_id for s in telemetry.spans}) == 1


def test_no_prompt_text_on_spans_by_default_and_messages_when_asked(telemetry: Telemetry, emu: Emulator) -> None:
    quiet = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    quiet.invoke(_chat("the secret question"))
    quiet.invoke(_chat("another secret question"))
    texts = [str(v) for s in telemetry.spans for v in (s.attributes or {}).values()]
    assert texts and not any(PROMPT_MARK in t or "secret question" in t for t in texts)

    telemetry.exporter.clear()
    loud = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation(capture_content=True))
    loud.invoke(_chat("the open question"))
    (span,) = telemetry.spans
    messages = json.loads(str(_attrs(span)["gen_ai.input.messages"]))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert PROMPT_MARK in messages[0]["parts"][0]["content"]
    assert messages[1]["parts"] == [{"type": "text", "content": "the open question"}]
    output = json.loads(str(_attrs(span)["gen_ai.output.messages"]))
    assert output[0]["role"] == "assistant" and output[0]["finish_reason"] == "stop"
    assert output[0]["parts"][0]["content"]


def test_a_miss_carries_its_diagnosis(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    for stamp in ("2026-11-22T04:30:01", "2026-11-22T04:31:07"):
        llm.invoke([("system", f"Now: {stamp}. {LONG_SYSTEM_PROMPT}"), ("human", "q")])
    attrs = _attrs(telemetry.spans[1])
    assert attrs["cache_integrations.miss.cause"] == "volatile_content"
    assert attrs["cache_integrations.miss.message_index"] == 0
    assert attrs["cache_integrations.miss.lost_tokens"] > 0
    assert "cache_integrations.miss.detail" not in attrs  # it quotes the prompt's timestamp
    assert "2026-11-22" not in json.dumps({k: str(v) for k, v in attrs.items()})


def test_an_error_ends_the_span_with_its_type(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", max_retries=0, instrument=telemetry.instrumentation())
    emu.inject_fault(glm_insufficient_balance())
    with pytest.raises(InsufficientBalanceError):
        llm.invoke(_chat("q"))
    (span,) = telemetry.spans
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "InsufficientBalanceError"
    assert SECRET not in json.dumps({k: str(v) for k, v in _attrs(span).items()}) + str(span.status.description)


def test_instrument_once_for_the_process_and_opt_out_per_model(telemetry: Telemetry, emu: Emulator) -> None:
    plain = chat_glm(emu, model="glm-4.7")
    opted_out = chat_glm(emu, model="glm-4.7", instrument=False)
    plain.invoke(_chat("before"))
    assert telemetry.spans == []
    instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    plain.invoke(_chat("after"))
    opted_out.invoke(_chat("never"))
    assert [s.name for s in telemetry.spans] == ["chat glm-4.7"]


# -- with_prompt_caching on the real ChatOpenAI, over loopback HTTP ---------------------------------------


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _openai(server: RunningServer) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-5-mini", api_key="test-key", base_url=server.openai_base_url, max_retries=0)


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_with_prompt_caching_on_chatopenai_invoke_stream_and_async(
    telemetry: Telemetry, emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", instrument=telemetry.instrumentation())
    llm.invoke(_chat("q1"))
    llm.invoke(_chat("q2"))
    spans = _only_model_spans(telemetry.spans)
    assert [s.name for s in spans] == ["chat gpt-5-mini", "chat gpt-5-mini"]
    second = _attrs(spans[1])
    assert second["gen_ai.provider.name"] == "openai"
    assert second["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens > 0
    assert second["server.address"] == "127.0.0.1"

    before = emu.counters.cached_tokens
    streamed = None
    for chunk in llm.stream(_chat("q3")):
        streamed = chunk if streamed is None else streamed + chunk
    third = _attrs(_only_model_spans(telemetry.spans)[2])
    assert third["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens - before > 0
    assert streamed is not None and streamed.response_metadata["cache_integrations"]["cached_tokens"] > 0

    before = emu.counters.cached_tokens
    reply = asyncio.run(llm.ainvoke(_chat("q4")))
    fourth = _attrs(_only_model_spans(telemetry.spans)[3])
    assert fourth["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens - before > 0
    assert (
        reply.response_metadata["cache_integrations"]["cached_tokens"] == fourth["gen_ai.usage.cache_read.input_tokens"]
    )


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order's status."""
    return f"Order {order_id} shipped."


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_the_agent_middleware_gives_a_span_per_model_call(
    telemetry: Telemetry, emu: Emulator, server: RunningServer
) -> None:
    middleware = PromptCachingMiddleware(instrument=telemetry.instrumentation())
    agent = create_agent(_openai(server), [lookup_order], system_prompt=LONG_SYSTEM_PROMPT, middleware=[middleware])
    agent.invoke({"messages": [("human", "Where is order 7?")]})
    agent.invoke({"messages": [("human", "Where is order 8?")]})
    spans = _only_model_spans(telemetry.spans)
    requests = [r for r in emu.requests if r.path.endswith("/chat/completions")]
    assert len(spans) == len(requests) >= 2
    assert sum(_attrs(s)["gen_ai.usage.cache_read.input_tokens"] for s in spans) == emu.counters.cached_tokens > 0


def test_a_wrapped_instrumented_model_gives_one_span_per_call(telemetry: Telemetry, emu: Emulator) -> None:
    inst = telemetry.instrumentation(mode="span")  # not "auto", which would also enrich rather than nest
    llm = with_prompt_caching(chat_glm(emu, model="glm-4.7", instrument=inst), provider="zhipuai", instrument=inst)
    llm.invoke(_chat("q1"))
    for _ in llm.stream(_chat("q2")):
        pass
    assert [s.name for s in telemetry.spans] == ["chat glm-4.7", "chat glm-4.7"]


# -- alongside other GenAI instrumentation ------------------------------------------------------------------


def test_an_existing_model_span_is_enriched_not_duplicated(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    first = llm.invoke(_chat("q1"))
    telemetry.exporter.clear()
    tracer = telemetry.tracer_provider.get_tracer("another-genai-instrumentation")
    with tracer.start_as_current_span("chat glm-4.7", attributes={"gen_ai.operation.name": "chat"}):
        llm.invoke(_chat("q2"))
    (span,) = telemetry.spans
    attrs = _attrs(span)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == emu.counters.cached_tokens > 0
    assert attrs["cache_integrations.saved.usd"] > 0
    assert "gen_ai.usage.input_tokens" not in attrs  # that instrumentation's to set
    # input and output of the enriched call are that instrumentation's to record; the cache types are ours
    assert telemetry.token_sum("input") == first.usage_metadata["input_tokens"]  # type: ignore[index]
    assert telemetry.token_sum("cache_read") == emu.counters.cached_tokens


def test_a_call_openllmetry_owns_gets_a_cache_only_span(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    token = otel_context.attach(otel_context.set_value("suppress_language_model_instrumentation", True))
    try:
        llm.invoke(_chat("q1"))
        llm.invoke(_chat("q2"))
    finally:
        otel_context.detach(token)
    spans = telemetry.spans
    assert [s.name for s in spans] == ["cache_integrations glm-4.7"] * 2
    attrs = _attrs(spans[1])
    assert not any(k.startswith("gen_ai.usage.") for k in attrs)
    assert attrs["cache_integrations.saved.usd"] > 0
    assert telemetry.token_sum("input") == 0 and telemetry.token_sum("cache_read") == emu.counters.cached_tokens


def test_suppressed_instrumentation_emits_nothing(telemetry: Telemetry, emu: Emulator) -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        reply = llm.invoke(_chat("q1"))
    finally:
        otel_context.detach(token)
    assert telemetry.spans == [] and telemetry.token_points() == []
    assert reply.response_metadata["cache_integrations"]["input_tokens"] > 0  # LangSmith's facts stay


def test_mode_is_validated() -> None:
    from cache_integrations import ConfigurationError
    from cache_integrations.otel import Instrumentation

    with pytest.raises(ConfigurationError, match="mode 'always' is not one of 'auto', 'span', 'attributes'"):
        Instrumentation(mode="always")  # type: ignore[arg-type]


def test_instrument_true_uses_the_global_providers(
    telemetry: Telemetry, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics

    from cache_integrations import observe

    monkeypatch.setattr(observe, "_default", None)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: telemetry.tracer_provider)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: telemetry.meter_provider)
    chat_glm(emu, model="glm-4.7", instrument=True).invoke(_chat("q"))
    assert [s.name for s in telemetry.spans] == ["chat glm-4.7"]
    assert telemetry.token_sum("input") > 0


def test_a_bad_instrument_setting_is_refused_up_front(emu: Emulator, telemetry: Telemetry) -> None:
    from cache_integrations import ConfigurationError

    with pytest.raises(ValueError, match=r"instrument: expected True, False, None or a cache_integrations\.otel"):
        chat_glm(emu, model="glm-4.7", instrument="yes")
    with pytest.raises(ValueError, match="instrument: expected True, False, None"):
        with_prompt_caching(chat_glm(emu, model="glm-4.7"), instrument=telemetry.tracer_provider)
    with pytest.raises(ConfigurationError, match="instrument: expected"):
        PromptCachingMiddleware(instrument="on")
    assert emu.counters.requests_total == 0


def test_a_stream_left_early_ends_its_span_without_usage(telemetry: Telemetry, emu: Emulator) -> None:
    llm = chat_glm(emu, model="glm-4.7", instrument=telemetry.instrumentation())
    chunks = llm.stream(_chat("q"))
    next(chunks)
    chunks.close()
    (span,) = telemetry.spans
    assert span.end_time is not None and span.status.status_code is StatusCode.UNSET
    assert "gen_ai.usage.input_tokens" not in _attrs(span)


def test_telemetry_trouble_never_fails_the_call(
    telemetry: Telemetry, emu: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    inst = telemetry.instrumentation()
    assert inst.diagnostics is not None

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("diagnostics bug")

    monkeypatch.setattr(inst.diagnostics, "observe", broken)
    reply = chat_glm(emu, model="glm-4.7", instrument=inst).invoke(_chat("q"))
    assert reply.content
    (span,) = telemetry.spans
    assert _attrs(span)["gen_ai.usage.input_tokens"] == emu.counters.prompt_tokens
    assert "could not diagnose a model call" in caplog.text


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_anthropics_own_miss_reason_reaches_the_span_and_the_metadata(
    telemetry: Telemetry, emu: Emulator, server: RunningServer
) -> None:
    from langchain_anthropic import ChatAnthropic

    model = ChatAnthropic(
        model="claude-sonnet-4-6", api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0
    )
    llm = with_prompt_caching(model, server_diagnostics=True, instrument=telemetry.instrumentation())
    llm.invoke([("system", "Now: 2026-11-22T09:00:00. " + LONG_SYSTEM_PROMPT), ("human", "q1")])
    second = llm.invoke([("system", "Now: 2026-11-22T09:00:01. " + LONG_SYSTEM_PROMPT), ("human", "q2")])
    first_span, second_span = (_attrs(s) for s in _only_model_spans(telemetry.spans))
    assert "cache_integrations.miss.provider_reason" not in first_span
    assert second_span["cache_integrations.miss.provider_reason"] == "system_changed"
    assert second_span["cache_integrations.miss.cause"] == "volatile_content"
    facts = second.response_metadata["cache_integrations"]
    assert facts["miss_provider_reason"] == "system_changed" and facts["provider"] == "anthropic"
