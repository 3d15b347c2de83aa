"""Gemini explicit caches behind the real llama-index-llms-google-genai `GoogleGenAI` (google-genai 2.x), against
the emulator over loopback HTTP: the cache travels in the call's ``generation_config.cached_content``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from google.genai import types
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory
from llama_index.core.tools import FunctionTool
from llama_index.llms.google_genai import GoogleGenAI

from cache_integrations.llama_index import CacheUsageHandler
from cache_integrations.llama_index._gemini_foreign import GeminiCachingMixin, with_gemini_caching
from cache_integrations.testing import CacheRules, Emulator, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

KEY = "gemini-llama-secret-456"
PREFIX_FIELDS = {"systemInstruction", "tools", "toolConfig"}
SYSTEM = ChatMessage(role="system", content=LONG_SYSTEM_PROMPT)


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _google(server: RunningServer, model: str = "gemini-2.5-flash", **kwargs: Any) -> GoogleGenAI:
    return GoogleGenAI(
        model=model,
        api_key=KEY,
        max_tokens=256,
        context_window=1_048_576,  # with both set, the package asks the API for no model metadata
        http_options={"base_url": server.url, "api_version": "v1beta"},
        **kwargs,
    )


def _cached(server: RunningServer, **options: Any) -> GoogleGenAI:
    options.setdefault("cache_mode", "always")
    options.setdefault("cache_registry", "memory")
    return with_gemini_caching(_google(server), **options)


def _user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}."


def get_time(zone: str) -> str:
    """Current time in a time zone."""
    return f"It is 10:00 in {zone}."


def _generates(emu: Emulator) -> list[dict[str, Any]]:
    return [
        r.body for r in emu.requests if "Content" in r.path.rsplit(":", 1)[-1] and ":" in r.path and r.status == 200
    ]


def _creates(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.method == "POST" and r.path.endswith("/cachedContents")]


def _assert_no_prefix_next_to_a_cache(emu: Emulator) -> None:
    assert all(r.status != 400 for r in emu.requests), [(r.path, r.status) for r in emu.requests]
    with_cache = [b for b in _generates(emu) if "cachedContent" in b]
    assert with_cache, "no request used a cache"
    for body in with_cache:
        assert not PREFIX_FIELDS & set(body), sorted(body)


def test_chat_creates_one_cache_and_sends_only_the_question(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    llm = _cached(server)
    first = llm.chat([SYSTEM, _user("First question?")])
    second = llm.chat([SYSTEM, _user("Second question?")])
    assert len(_creates(emu)) == 1 and _creates(emu)[0]["systemInstruction"]
    _assert_no_prefix_next_to_a_cache(emu)
    assert [b["contents"] for b in _generates(emu)] == [
        [{"parts": [{"text": "First question?"}], "role": "user"}],
        [{"parts": [{"text": "Second question?"}], "role": "user"}],
    ]
    cache = first.raw["cache"]
    assert cache["created"] and cache["written_tokens"] == cache["tokens"] > 1024
    assert second.raw["cache"]["name"] == cache["name"] and not second.raw["cache"]["created"]
    assert usage.total.calls == 2
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens == 2 * cache["tokens"]
    assert usage.total.cache_write_tokens == cache["tokens"]
    assert usage.total.input_tokens == emu.counters.prompt_tokens + cache["tokens"]
    assert usage.total.cache_storage_token_hours == pytest.approx(cache["tokens"])


def test_complete_and_stream(emu: Emulator, server: RunningServer, usage: CacheUsageHandler) -> None:
    llm = _cached(server)
    chunks = list(llm.stream_chat([SYSTEM, _user("Streamed question?")]))
    assert chunks[-1].message.content and chunks[-1].raw["cache"]["created"]
    llm.complete("A completion")  # no system prompt: nothing to cache, sent as it is
    assert len(_creates(emu)) == 1
    assert "cachedContent" not in _generates(emu)[-1]
    _assert_no_prefix_next_to_a_cache(emu)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens
    assert usage.total.cache_write_tokens == chunks[-1].raw["cache"]["tokens"]


async def test_async_chat_and_stream(emu: Emulator, server: RunningServer, usage: CacheUsageHandler) -> None:
    llm = _cached(server)
    one = await llm.achat([SYSTEM, _user("one")])
    chunks = [c async for c in await llm.astream_chat([SYSTEM, _user("two")])]
    assert one.raw["cache"]["created"] and chunks[-1].raw["cache"]["name"] == one.raw["cache"]["name"]
    assert len(_creates(emu)) == 1
    _assert_no_prefix_next_to_a_cache(emu)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens


def test_tools_live_in_the_cache_and_tool_calls_are_still_parsed(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    tools = [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_time)]
    response = llm.chat_with_tools(tools, user_msg="Weather in Oslo?", chat_history=[SYSTEM], tool_required=True)
    (selection,) = llm.get_tool_calls_from_response(response)
    assert selection.tool_name in {"get_weather", "get_time"} and selection.tool_kwargs
    (created,) = _creates(emu)
    declarations = created["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == ["get_time", "get_weather"]  # the layout: by name
    assert declarations[1]["parametersJsonSchema"]["required"] == ["city"]
    assert created["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    _assert_no_prefix_next_to_a_cache(emu)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # llama-index-workflows inspects pydantic members
@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_over_several_steps(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler, streaming: bool
) -> None:
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_time)],
        llm=_cached(server),
        system_prompt=LONG_SYSTEM_PROMPT,
        streaming=streaming,
    )
    memory = Memory.from_defaults(session_id="agent-g", token_limit=100_000)
    for question in ("Use get_weather for Paris.", "Use get_time for CET.", "Use get_weather for Rome."):
        await agent.run(question, memory=memory)
    bodies = _generates(emu)
    assert len(bodies) >= 6 and all("cachedContent" in b for b in bodies)
    assert len(_creates(emu)) == 1
    _assert_no_prefix_next_to_a_cache(emu)
    assert [m.role.value for m in await memory.aget_all()].count("tool") == 3  # the agent ran the tool calls
    assert usage.total.calls == len(bodies)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens
    assert all(c.usage.cache_read_tokens > 1024 for c in usage.calls)


async def test_a_cold_batch_of_twenty_creates_one_cache(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    llm = _cached(server)
    answers = await asyncio.gather(*(llm.achat([SYSTEM, _user(f"Review snippet {i}")]) for i in range(20)))
    assert len(_creates(emu)) == 1 == emu.counters.caches_created
    assert len({a.raw["cache"]["name"] for a in answers}) == 1
    assert sum(a.raw["cache"]["created"] for a in answers) == 1
    _assert_no_prefix_next_to_a_cache(emu)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens
    assert usage.total.cache_write_tokens == answers[0].raw["cache"]["tokens"]


def test_a_deleted_cache_is_recreated_and_the_call_retried_invisibly(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler, caplog: pytest.LogCaptureFixture
) -> None:
    llm = _cached(server)
    first = llm.chat([SYSTEM, _user("one")])
    assert emu.delete_cached_content(first.raw["cache"]["name"])
    with caplog.at_level(logging.WARNING):
        again = llm.chat([SYSTEM, _user("two")])
    assert again.raw["cache"]["recovered"] and again.raw["cache"]["name"] != first.raw["cache"]["name"]
    assert [r.status for r in emu.requests if "generateContent" in r.path] == [200, 403, 200]
    assert "provider_side_miss" not in caplog.text  # the recreated cache's writes are not read as a miss
    emu.delete_cached_content(again.raw["cache"]["name"])
    chunks = list(llm.stream_chat([SYSTEM, _user("three")]))
    assert chunks[-1].raw["cache"]["recovered"] and chunks[-1].message.content
    assert usage.total.calls == 3 and usage.total.cache_read_tokens == emu.counters.cached_tokens


async def test_async_recovery(emu: Emulator, server: RunningServer) -> None:
    llm = _cached(server)
    first = await llm.achat([SYSTEM, _user("one")])
    emu.delete_cached_content(first.raw["cache"]["name"])
    again = await llm.achat([SYSTEM, _user("two")])
    assert again.raw["cache"]["recovered"]
    emu.delete_cached_content(again.raw["cache"]["name"])
    chunks = [c async for c in await llm.astream_chat([SYSTEM, _user("three")])]
    assert chunks[-1].raw["cache"]["recovered"]


def test_auto_mode_sends_inline_until_a_cache_pays(emu: Emulator, server: RunningServer) -> None:
    emu.gemini_rules = CacheRules(enabled=False)
    llm = _cached(server, cache_mode="auto")
    for i in range(6):
        llm.chat([SYSTEM, _user(f"question {i}")])
    assert ["cachedContent" in b for b in _generates(emu)] == [False, False, False, False, True, True]
    _assert_no_prefix_next_to_a_cache(emu)


def test_what_is_not_ours_to_cache_is_sent_as_it_is(emu: Emulator, server: RunningServer) -> None:
    emu.gemini_models.append("gemini-4-argon")
    argon = with_gemini_caching(_google(server, model="gemini-4-argon"), cache_mode="always", cache_registry="memory")
    argon.chat([SYSTEM, _user("question")])
    assert not _creates(emu) and _generates(emu)[-1]["systemInstruction"]
    own = _cached(server).chat([SYSTEM, _user("make one")]).raw["cache"]["name"]
    mine = with_gemini_caching(_google(server, cached_content=own), cache_mode="always", cache_registry="memory")
    answer = mine.chat([_user("question")])
    assert len(_creates(emu)) == 1 and "cache" not in answer.raw
    assert _generates(emu)[-1]["cachedContent"] == own
    # never replaced by ours: with a system prompt too, the request is the caller's (and Gemini refuses it)
    with pytest.raises(Exception, match="400"):
        mine.chat([SYSTEM, _user("question")])
    assert len(_creates(emu)) == 1 and emu.requests[-1].body["cachedContent"] == own
    # a system instruction in the model's own generation_config is not ours to move into a cache either
    config = types.GenerateContentConfig(system_instruction="Be brief.")
    configured = with_gemini_caching(_google(server, generation_config=config), cache_mode="always")
    configured.chat([SYSTEM, _user("question")])
    assert len(_creates(emu)) == 1 and "cachedContent" not in emu.requests[-1].body


def test_wrapping_and_the_key(emu: Emulator, server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    base = _google(server)
    llm = with_gemini_caching(base, cache_mode="always", cache_registry="memory")
    assert isinstance(llm, GoogleGenAI | GeminiCachingMixin) and not isinstance(base, GeminiCachingMixin)
    assert with_gemini_caching(llm) is llm
    with caplog.at_level(logging.DEBUG):
        answer = llm.chat([SYSTEM, _user("one")])
    assert KEY not in caplog.text + repr(llm) + str(answer.raw)
    with pytest.raises(ValueError, match="cache_mode: 'never' is not one of"):
        with_gemini_caching(base, cache_mode="never")
    with pytest.raises(ValueError, match="expected a GoogleGenAI"):
        with_gemini_caching("gemini")


def test_with_prompt_caching_routes_googlegenai_to_managed_explicit_caches(
    emu: Emulator, server: RunningServer
) -> None:
    from cache_integrations.llama_index import with_prompt_caching

    llm = with_prompt_caching(_google(server), cache_mode="always", cache_registry="memory", prompt_cache_key="x")
    assert isinstance(llm, GeminiCachingMixin)
    llm.chat([SYSTEM, _user("First question?")])
    second = llm.chat([SYSTEM, _user("Second question?")])
    assert len(_creates(emu)) == 1
    assert all("cachedContent" in body and not PREFIX_FIELDS & set(body) for body in _generates(emu))
    assert second.raw is not None
    assert with_prompt_caching(llm) is llm
