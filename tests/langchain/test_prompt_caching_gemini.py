"""Gemini explicit caches behind the real `ChatGoogleGenerativeAI` (langchain-google-genai 4.4, google-genai 2.x),
through `with_prompt_caching` and `PromptCachingMiddleware`, against the emulator over loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from cache_integrations.langchain import (
    PromptCachingChatModel,
    PromptCachingMiddleware,
    get_cache_usage_callback,
    with_prompt_caching,
)
from cache_integrations.testing import CacheRules, Emulator, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

KEY = "gemini-secret-key-123"
PREFIX_FIELDS = {"systemInstruction", "tools", "toolConfig"}


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _google(server: RunningServer, model: str = "gemini-2.5-flash", **kwargs: Any) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(
        model=model, google_api_key=KEY, base_url=server.url, api_version="v1beta", max_retries=0, **kwargs
    )


def _cached(server: RunningServer, **options: Any) -> PromptCachingChatModel:
    options.setdefault("cache_mode", "always")
    options.setdefault("cache_registry", "memory")
    return with_prompt_caching(_google(server), **options)


@tool
def zeta_lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"Sunny in {city}."


@tool
def alpha_add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _generates(emu: Emulator) -> list[dict[str, Any]]:
    return [
        r.body
        for r in emu.requests
        if r.path.endswith(("Content", ":streamGenerateContent")) and ":" in r.path and r.status == 200
    ]


def _creates(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.method == "POST" and r.path.endswith("/cachedContents")]


def _assert_no_prefix_next_to_a_cache(emu: Emulator) -> None:
    """Gemini answers 400 to a request naming a cache that also carries a system instruction, tools or tool config."""
    assert all(r.status != 400 for r in emu.requests), [(r.path, r.status) for r in emu.requests]
    with_cache = [b for b in _generates(emu) if "cachedContent" in b]
    assert with_cache, "no request used a cache"
    for body in with_cache:
        assert not PREFIX_FIELDS & set(body), sorted(body)


def _join(chunks: Iterator[BaseMessageChunk] | list[BaseMessageChunk]) -> AIMessage:
    full: Any = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


def test_invoke_creates_one_cache_and_then_sends_only_the_question(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    with get_cache_usage_callback() as usage:
        first = llm.invoke([SystemMessage(LONG_SYSTEM_PROMPT), HumanMessage("First question?")])
        second = llm.invoke([SystemMessage(LONG_SYSTEM_PROMPT), HumanMessage("Second question?")])
    assert len(_creates(emu)) == 1 and _creates(emu)[0]["systemInstruction"]
    _assert_no_prefix_next_to_a_cache(emu)
    bodies = _generates(emu)
    assert [[p["text"] for c in b["contents"] for p in c["parts"]] for b in bodies] == [
        ["First question?"],
        ["Second question?"],
    ]
    cache = first.response_metadata["cache"]
    assert cache["created"] and cache["written_tokens"] == cache["tokens"] > 1024
    assert cache["storage_token_hours"] == pytest.approx(cache["tokens"])  # one hour booked
    assert first.usage_metadata is not None and second.usage_metadata is not None
    assert first.usage_metadata["input_token_details"]["cache_creation"] == cache["tokens"]
    assert (
        second.response_metadata["cache"]["name"] == cache["name"] and not second.response_metadata["cache"]["created"]
    )
    assert "cache_creation" not in second.usage_metadata["input_token_details"]
    # the handler's numbers are the emulator's
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens == 2 * cache["tokens"]
    assert usage.total.cache_write_tokens == cache["tokens"]
    assert usage.total.input_tokens == emu.counters.prompt_tokens + cache["tokens"]
    assert usage.total.cache_storage_token_hours == pytest.approx(cache["tokens"])
    assert usage.total.storage_cost is not None and usage.total.storage_cost > 0  # savings are net of storage


def test_stream_and_async_use_the_cache_and_report_it(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    with get_cache_usage_callback() as usage:
        streamed = _join(list(llm.stream([("system", LONG_SYSTEM_PROMPT), ("human", "Streamed question?")])))
    assert streamed.content and streamed.response_metadata["cache"]["created"]
    assert streamed.usage_metadata is not None
    assert (
        streamed.usage_metadata["input_token_details"]["cache_creation"]
        == streamed.response_metadata["cache"]["tokens"]
    )
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_explicit > 0
    assert usage.total.cache_write_tokens == streamed.response_metadata["cache"]["tokens"]
    _assert_no_prefix_next_to_a_cache(emu)


async def test_async_invoke_and_stream(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    with get_cache_usage_callback() as usage:
        one = await llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
        chunks = [c async for c in llm.astream([("system", LONG_SYSTEM_PROMPT), ("human", "two")])]
    two = _join(chunks)
    assert one.response_metadata["cache"]["created"] and not two.response_metadata["cache"]["created"]
    assert one.response_metadata["cache"]["name"] == two.response_metadata["cache"]["name"]
    assert len(_creates(emu)) == 1
    _assert_no_prefix_next_to_a_cache(emu)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens


@pytest.mark.parametrize(
    "choice",
    [
        {"tool_choice": "zeta_lookup"},
        {"tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["zeta_lookup"]}}},
    ],
    ids=["tool_choice", "tool_config"],
)
def test_tools_and_tool_choice_live_in_the_cache_and_tool_calls_are_still_parsed(
    emu: Emulator, server: RunningServer, choice: dict[str, Any]
) -> None:
    llm = _cached(server).bind_tools([zeta_lookup, alpha_add], **choice)
    answer = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "What is the weather in Oslo?")])
    assert isinstance(answer, AIMessage)
    assert [c["name"] for c in answer.tool_calls] == ["zeta_lookup"] and answer.tool_calls[0]["args"]
    (created,) = _creates(emu)
    names = [d["name"] for t in created["tools"] for d in t["functionDeclarations"]]
    assert names == ["alpha_add", "zeta_lookup"]
    assert created["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["zeta_lookup"]}
    _assert_no_prefix_next_to_a_cache(emu)


def test_agent_loop_with_the_middleware(emu: Emulator, server: RunningServer) -> None:
    agent = create_agent(
        _google(server),
        [zeta_lookup, alpha_add],
        system_prompt=LONG_SYSTEM_PROMPT,
        middleware=[PromptCachingMiddleware(cache_mode="always", cache_registry="memory")],
        checkpointer=InMemorySaver(),
    )
    config: Any = {"configurable": {"thread_id": "agent-g"}}
    with get_cache_usage_callback() as usage:
        for question in ["Weather in Paris?", "Weather in Rome?", "Add 2 and 3"]:
            state = agent.invoke({"messages": [("human", question)]}, config=config)
    bodies = _generates(emu)
    assert len(bodies) >= 6 and all("cachedContent" in b for b in bodies)
    _assert_no_prefix_next_to_a_cache(emu)
    assert len(_creates(emu)) == 1  # one prefix: the system prompt and the two tools
    tool_messages = [m for m in state["messages"] if m.type == "tool"]
    assert len(tool_messages) >= 3  # the agent parsed and ran the tool calls
    # one callback record per model call, each reading the cache; the handler's numbers are the emulator's
    assert len(usage.calls) == len(bodies)
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert all(r > 1024 for r in reads) and sum(reads) == emu.counters.cached_tokens
    assert usage.calls[0].usage.cache_write_tokens == reads[0]
    assert sum(c.usage.cache_write_tokens for c in usage.calls) == reads[0]


async def test_async_agent_loop_with_the_middleware(emu: Emulator, server: RunningServer) -> None:
    agent = create_agent(
        _google(server),
        [zeta_lookup, alpha_add],
        system_prompt=LONG_SYSTEM_PROMPT,
        middleware=[PromptCachingMiddleware(cache_mode="always", cache_registry="memory")],
    )
    await agent.ainvoke({"messages": [("human", "Weather in Paris?")]})
    assert len(_generates(emu)) >= 2 and len(_creates(emu)) == 1
    _assert_no_prefix_next_to_a_cache(emu)


def test_a_cold_batch_of_twenty_creates_one_cache(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    inputs: list[Any] = [[("system", LONG_SYSTEM_PROMPT), ("human", f"Review snippet {i}")] for i in range(20)]
    with get_cache_usage_callback() as usage:
        answers = llm.batch(inputs, config={"max_concurrency": 8})
    assert len(answers) == 20 and len(_creates(emu)) == 1 == emu.counters.caches_created
    assert len({a.response_metadata["cache"]["name"] for a in answers}) == 1
    assert sum(a.response_metadata["cache"]["created"] for a in answers) == 1
    _assert_no_prefix_next_to_a_cache(emu)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_explicit
    assert usage.total.cache_write_tokens == answers[0].response_metadata["cache"]["tokens"]


def test_a_deleted_cache_is_recreated_and_the_call_retried_invisibly(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    first = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
    assert emu.delete_cached_content(first.response_metadata["cache"]["name"])
    with get_cache_usage_callback() as usage:
        again = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    cache = again.response_metadata["cache"]
    assert cache["recovered"] and cache["created"] and cache["name"] != first.response_metadata["cache"]["name"]
    assert [r.status for r in emu.requests if "generateContent" in r.path] == [200, 403, 200]
    assert len(usage.calls) == 1 and usage.total.cache_read_tokens == cache["tokens"]
    # streams recover the same way, before any output
    assert emu.delete_cached_content(cache["name"])
    streamed = _join(list(llm.stream([("system", LONG_SYSTEM_PROMPT), ("human", "three")])))
    assert streamed.response_metadata["cache"]["recovered"] and streamed.content
    assert [r.status for r in emu.requests if "streamGenerateContent" in r.path] == [403, 200]
    _assert_no_prefix_next_to_a_cache(emu)


async def test_async_recovery(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    first = await llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
    emu.delete_cached_content(first.response_metadata["cache"]["name"])
    again = await llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    assert again.response_metadata["cache"]["recovered"]
    emu.delete_cached_content(again.response_metadata["cache"]["name"])
    chunks = [c async for c in llm.astream([("system", LONG_SYSTEM_PROMPT), ("human", "three")])]
    assert _join(chunks).response_metadata["cache"]["recovered"]


def test_when_the_cache_cannot_be_recreated_the_retry_goes_inline(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)  # "always": a refused creation would raise, but a retry must not fail the call
    first = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
    emu.delete_cached_content(first.response_metadata["cache"]["name"])
    emu.inject_fault(400, endpoint="gemini", path_prefix="/v1beta/cachedContents", method="POST")
    again = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    assert "cache" not in again.response_metadata
    last = _generates(emu)[-1]
    assert "cachedContent" not in last and last["systemInstruction"]  # inline: the whole prompt
    assert again.content


def test_a_403_that_is_not_a_vanished_cache_is_raised(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
    emu.inject_fault(403, endpoint="gemini", path_prefix="/v1beta/models")
    with pytest.raises(Exception, match="403"):
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    assert len(_creates(emu)) == 1


def test_auto_mode_sends_inline_until_a_cache_pays(emu: Emulator, server: RunningServer) -> None:
    emu.gemini_rules = CacheRules(enabled=False)  # no implicit hits: they would hold the paid cache back
    llm = _cached(server, cache_mode="auto")
    for i in range(6):
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", f"question {i}")])
    bodies = _generates(emu)
    uses = ["cachedContent" in b for b in bodies]
    # gemini-2.5-flash prices: a cache pays from the fifth send of the prefix within its TTL
    assert uses == [False, False, False, False, True, True]
    assert all(b["systemInstruction"] for b in bodies[:4])
    _assert_no_prefix_next_to_a_cache(emu)


def test_models_without_explicit_caching_get_the_layout_only(emu: Emulator, server: RunningServer) -> None:
    emu.gemini_models.append("gemini-4-argon")
    llm = with_prompt_caching(_google(server, model="gemini-4-argon"), cache_mode="always", cache_registry="memory")
    llm.invoke([("human", "question"), ("system", LONG_SYSTEM_PROMPT)])
    assert not _creates(emu)
    (body,) = _generates(emu)
    assert "cachedContent" not in body and body["systemInstruction"]


def test_a_model_with_its_own_cached_content_keeps_it(emu: Emulator, server: RunningServer) -> None:
    mine = _cached(server).invoke([("system", LONG_SYSTEM_PROMPT), ("human", "make one")])
    name = mine.response_metadata["cache"]["name"]
    emu.clear_requests()
    llm = with_prompt_caching(_google(server, cached_content=name), cache_mode="always", cache_registry="memory")
    answer = llm.invoke("question")
    assert not _creates(emu) and "cache" not in answer.response_metadata
    assert _generates(emu)[-1]["cachedContent"] == name
    # the caller's own cache is never replaced by ours, even when the call also carries a system prompt
    # (then the request is the caller's, as langchain-google-genai builds it, and Gemini refuses it)
    with pytest.raises(Exception, match="400"):
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "question")])
    assert not _creates(emu) and emu.requests[-1].body["cachedContent"] == name


def test_the_key_never_reaches_logs_or_reprs(
    emu: Emulator, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm = _cached(server)
    with caplog.at_level(logging.DEBUG):
        answer = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
        emu.delete_cached_content(answer.response_metadata["cache"]["name"])
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    strategy = llm.coordinator.book.strategy("google")
    prepared = llm.coordinator.prepare(llm.bound, _call([("system", LONG_SYSTEM_PROMPT), ("human", "x")]))
    shown = [caplog.text, repr(llm), repr(prepared), repr(prepared.context), repr(strategy), str(answer)]
    assert not [s for s in shown if KEY in s]
    # nor does a password in the registry's URL (not connected to until a cache is needed)
    redis = with_prompt_caching(_google(server), cache_registry="redis://:hunter2@127.0.0.1:9/0")
    assert "hunter2" not in repr(redis) + str(redis.to_json())


def _call(messages: list[Any]) -> Any:
    from langchain_core.messages import convert_to_messages

    from cache_integrations.langchain._foreign import ForeignCall

    return ForeignCall((), tuple(convert_to_messages(messages)))


def test_bad_options_are_rejected_before_anything_is_sent(server: RunningServer) -> None:
    with pytest.raises(ValueError, match=r"cache_mode: 'sometimes' is not one of \['auto', 'always', 'off'\]"):
        with_prompt_caching(_google(server), cache_mode="sometimes")
    with pytest.raises(ValueError, match="cache_ttl: expected positive finite seconds"):
        PromptCachingMiddleware(cache_ttl=0)


def test_auto_mode_holds_back_while_the_implicit_cache_serves_the_prefix(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server, cache_mode="auto")
    with get_cache_usage_callback() as usage:
        for i in range(6):
            llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", f"question {i}")])
    assert not _creates(emu) and emu.counters.cached_tokens_implicit > 0
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit


def test_a_built_in_tool_the_cache_cannot_hold_leaves_the_request_as_it_is(
    emu: Emulator, server: RunningServer
) -> None:
    llm = _cached(server).bind_tools([zeta_lookup, {"google_search": {}}])
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "Weather in Oslo?")])
    assert not _creates(emu)
    (body,) = _generates(emu)
    assert "cachedContent" not in body and body["systemInstruction"] and len(body["tools"]) == 2


class Verdict(BaseModel):
    """A review verdict."""

    verdict: str


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_through_the_cache(emu: Emulator, server: RunningServer, method: str) -> None:
    llm = _cached(server).with_structured_output(Verdict, method=method)
    parsed = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "Your verdict?")])
    assert isinstance(parsed, Verdict)
    _assert_no_prefix_next_to_a_cache(emu)
    (created,) = _creates(emu)
    assert ("tools" in created) is (method == "function_calling")


def test_one_wrapped_model_across_event_loops_and_threads(emu: Emulator, server: RunningServer) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    llm = _cached(server)
    for i in range(2):  # a new event loop each time: the manager's async locks and clients are per loop
        answer = asyncio.run(llm.ainvoke([("system", LONG_SYSTEM_PROMPT), ("human", f"loop {i}")]))
        assert "cache" in answer.response_metadata
    with ThreadPoolExecutor(4) as pool:
        questions = [[("system", LONG_SYSTEM_PROMPT), ("human", f"thread {i}")] for i in range(8)]
        answers = list(pool.map(lambda q: asyncio.run(llm.ainvoke(q)), questions))
    assert {a.response_metadata["cache"]["name"] for a in answers} == {answer.response_metadata["cache"]["name"]}
    assert len(_creates(emu)) == 1
    _assert_no_prefix_next_to_a_cache(emu)
