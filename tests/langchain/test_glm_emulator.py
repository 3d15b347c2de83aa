"""ChatGLM end to end against the project's emulator: call paths, layout, retries, typed errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk

from cache_integrations import (
    BadRequestError,
    InsufficientBalanceError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
)
from cache_integrations.langchain import ChatGLM, get_cache_usage_callback
from cache_integrations.providers._http import RetryPolicy, parse_retry_after
from cache_integrations.testing import Emulator
from cache_integrations.testing.faults import (
    GLM_RATE_LIMIT_BODY,
    Fault,
    glm_insufficient_balance,
    glm_rate_limit,
    stream_cut,
)

from .long_prompt import LONG_SYSTEM_PROMPT

SECRET = "sk-emulated-secret-0123456789"


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


def _llm(emu: Emulator, **kwargs: Any) -> ChatGLM:
    transport = emu.transport()
    return ChatGLM(
        api_key=SECRET,
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )


def _collect(chunks: Iterator[BaseMessageChunk]) -> AIMessage:
    full: BaseMessageChunk | None = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


def _prompt(question: str) -> list[tuple[str, str]]:
    return [("system", LONG_SYSTEM_PROMPT), ("human", question)]


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_every_call_path_reports_the_cache_over_real_http(emu: Emulator) -> None:
    with emu.serve() as server:
        llm = ChatGLM(api_key=SECRET, base_url=server.glm_base_url)
        with get_cache_usage_callback() as usage:
            results = [llm.invoke(_prompt("q1"))]
            results.append(_collect(llm.stream(_prompt("q2"))))
            results += llm.batch([_prompt("q3"), _prompt("q4")], config={"max_concurrency": 1})
            results.append(await llm.ainvoke(_prompt("q5")))
            full: BaseMessageChunk | None = None
            async for chunk in llm.astream(_prompt("q6")):
                full = chunk if full is None else full + chunk
            assert isinstance(full, AIMessage)
            results.append(full)
    reads = [r.usage_metadata["input_token_details"]["cache_read"] for r in results if r.usage_metadata]
    assert len(reads) == 6 and reads[0] == 0 and all(n > 1000 for n in reads[1:])
    counters = emu.counters
    stats = usage.by_model["glm-4.7"]
    assert stats.calls == counters.requests_total == 6
    assert stats.input_tokens == counters.prompt_tokens
    assert stats.cache_read_tokens == counters.cached_tokens_implicit == sum(reads)
    assert stats.output_tokens == counters.completion_tokens


def test_layout_keeps_the_prefix_when_the_app_reorders(emu: Emulator) -> None:
    def weather(city: str) -> str:
        """Weather for a city."""
        return city

    def clock(zone: str) -> str:
        """Time in a zone."""
        return zone

    def conversation(question: str, tools: list[Any]) -> tuple[list[Any], list[Any]]:
        # An app that appends its (stable) system prompt after the question, and binds tools in
        # whatever order its registry yields them.
        return [("human", question), ("system", LONG_SYSTEM_PROMPT)], tools

    def cached(layout: bool) -> int:
        llm = _llm(emu, cache_friendly_layout=layout)
        emu.evict_all()
        msgs, tools = conversation("first", [weather, clock])
        llm.bind_tools(tools).invoke(msgs)
        msgs, tools = conversation("second", [clock, weather])
        second = llm.bind_tools(tools).invoke(msgs)
        assert second.usage_metadata
        return second.usage_metadata["input_token_details"]["cache_read"]

    with_layout, without_layout = cached(True), cached(False)
    assert with_layout > 1000
    assert without_layout < 100  # only the first few tool-JSON tokens still match


def test_rate_limits_are_retried_honouring_retry_after(emu: Emulator) -> None:
    emu.inject_fault(glm_rate_limit(retry_after="0"), times=2)
    reply = _llm(emu, max_retries=2).invoke("hello")
    assert reply.content
    assert emu.counters.requests_total == 3 and emu.counters.errors_injected == 2


def test_rate_limit_surfaces_typed_after_the_last_retry(emu: Emulator) -> None:
    emu.inject_fault(glm_rate_limit(retry_after="0"), times=5)
    with pytest.raises(RateLimitError) as info:
        _llm(emu, max_retries=1).invoke("hello")
    assert (info.value.status_code, info.value.code) == (429, "1302")
    assert emu.counters.requests_total == 2


def test_insufficient_balance_is_not_retried(emu: Emulator) -> None:
    emu.inject_fault(glm_insufficient_balance(), times=3)
    with pytest.raises(InsufficientBalanceError) as info:
        _llm(emu, max_retries=3).invoke("hello")
    assert (info.value.status_code, info.value.code) == (429, "1113")
    assert "recharge" in str(info.value).lower() and SECRET not in str(info.value)
    assert emu.counters.requests_total == 1


def test_server_errors_are_retried_before_a_stream_starts(emu: Emulator) -> None:
    emu.inject_fault(Fault(status=503, endpoint="glm", headers={"Retry-After": "0"}), times=1)
    reply = _collect(_llm(emu).stream("hello"))
    assert reply.content and reply.usage_metadata
    assert emu.counters.requests_total == 2


def test_server_error_after_retries_is_typed(emu: Emulator) -> None:
    emu.inject_fault(Fault(status=500, endpoint="glm", headers={"Retry-After": "0"}), times=3)
    with pytest.raises(ServerError) as info:
        _llm(emu, max_retries=2).invoke("hello")
    assert info.value.status_code == 500 and emu.counters.requests_total == 3


async def test_provider_rejection_is_a_bad_request_with_its_code(emu: Emulator) -> None:
    body = {"error": {"code": "1214", "message": "The messages parameter is illegal. Please check the documentation."}}
    emu.inject_fault(Fault(status=400, body=body, endpoint="glm"), times=1)
    with pytest.raises(BadRequestError) as info:
        await _llm(emu).ainvoke("hello")
    assert (info.value.status_code, info.value.code) == (400, "1214")
    assert emu.counters.requests_total == 1


def test_a_stream_cut_short_raises_instead_of_reporting_zero_usage(emu: Emulator) -> None:
    emu.inject_fault(stream_cut(after_chunks=2, endpoint="glm"), times=1)
    with pytest.raises(ProviderConnectionError, match="stream ended before the answer finished"):
        _collect(_llm(emu).stream("hello"))


def test_the_key_never_reaches_logs(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emu.inject_fault(glm_rate_limit(retry_after="0"), times=1)
    _llm(emu).invoke("hello")
    assert caplog.records and SECRET not in caplog.text
    assert all(r.headers.get("authorization") == "***" for r in emu.requests)  # the emulator's log masks it too


def test_retry_after_parsing_and_backoff_bounds() -> None:
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None
    in_30s = parse_retry_after({"retry-after": formatdate(__import__("time").time() + 30, usegmt=True)})
    assert in_30s is not None and 25 <= in_30s <= 31
    policy = RetryPolicy(max_retries=5, initial_delay=0.5, max_delay=8.0, jitter=0.0)
    assert [policy.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(0, retry_after=120) == 8.0 and policy.delay(3, retry_after=0) == 0.0
    assert GLM_RATE_LIMIT_BODY["error"]["code"] == "1302"


def test_call_records_carry_the_run_id_under_batch(emu: Emulator) -> None:
    from langchain_core.tracers.context import collect_runs

    with get_cache_usage_callback() as usage, collect_runs() as runs:
        _llm(emu).batch([f"question {i}" for i in range(4)], config={"max_concurrency": 4})
    assert {c.run_id for c in usage.calls} == {str(r.id) for r in runs.traced_runs}
