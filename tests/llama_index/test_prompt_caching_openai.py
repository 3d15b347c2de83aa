"""`with_prompt_caching` on the real llama-index-llms-openai `OpenAI`, against the emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import CacheControl, CachePoint, ChatMessage, TextBlock
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI
from pydantic import BaseModel

from cache_integrations.llama_index import (
    CachedTokenCountingHandler,
    CacheUsageHandler,
    PromptCachingLLM,
    prompt_cache_session,
    with_prompt_caching,
)
from cache_integrations.llama_index import _foreign as foreign
from cache_integrations.strategies import prompt_cache_key_for
from cache_integrations.testing import Emulator, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

SYSTEM = ChatMessage(role="system", content=LONG_SYSTEM_PROMPT)


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _openai(server: RunningServer, **kwargs: Any) -> OpenAI:
    return OpenAI(
        model="gpt-4o-mini", api_key="sk-test-key-0123456789", api_base=server.openai_base_url, max_retries=0, **kwargs
    )


def zeta_lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"Sunny in {city}."


def alpha_add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = [FunctionTool.from_defaults(zeta_lookup), FunctionTool.from_defaults(alpha_add)]


def _user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def _bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.endpoint == "openai" and r.path.endswith("/chat/completions")]


def test_system_first_tools_by_name_and_a_hashed_key_per_session(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    with prompt_cache_session("thread-1"):
        llm.chat_with_tools(TOOLS, user_msg="What is the weather in Paris?", chat_history=[_user("hello"), SYSTEM])
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "user"]
    assert [t["function"]["name"] for t in body["tools"]] == ["alpha_add", "zeta_lookup"]
    assert body["prompt_cache_key"] == prompt_cache_key_for("thread-1")
    assert "thread-1" not in body["prompt_cache_key"]
    with prompt_cache_session("thread-2"):
        llm.chat([SYSTEM, _user("q")])
    assert _bodies(emu)[-1]["prompt_cache_key"] == prompt_cache_key_for("thread-2")


def test_the_callers_own_key_wins_and_no_key_without_a_session(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    with prompt_cache_session("s"):
        llm.chat([SYSTEM, _user("q")], prompt_cache_key="mine")
    assert _bodies(emu)[-1]["prompt_cache_key"] == "mine"
    own = with_prompt_caching(_openai(server, additional_kwargs={"prompt_cache_key": "llm-own"}), provider="openai")
    with prompt_cache_session("s"):
        own.chat([SYSTEM, _user("q")])
    assert _bodies(emu)[-1]["prompt_cache_key"] == "llm-own"
    llm.chat([SYSTEM, _user("q")])
    assert "prompt_cache_key" not in _bodies(emu)[-1]


def test_sessions_come_from_the_tags_then_the_wrappers_default(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", session_id="tenant-a", retention="24h")
    handler = CacheUsageHandler()
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    try:
        llm.chat([SYSTEM, _user("one")])
        with instrument_tags({"thread_id": "from-tags"}):
            llm.chat([SYSTEM, _user("two")])
        with prompt_cache_session("outer"), prompt_cache_session("inner"):
            llm.chat([SYSTEM, _user("three")])
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not handler]
    keys = [b["prompt_cache_key"] for b in _bodies(emu)]
    assert keys == [prompt_cache_key_for(s) for s in ("tenant-a", "from-tags", "inner")]
    assert {b["prompt_cache_retention"] for b in _bodies(emu)} == {"24h"}
    # the wrapper's default session is in the call's events too: the handler's diagnosis is per session
    assert [d.conversation for d in handler.diagnoses] == ["tenant-a", "from-tags", "inner"]


def test_an_openai_compatible_server_gets_the_layout_but_no_openai_only_fields(
    emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(_openai(server), retention="24h")  # the base URL is not api.openai.com
    assert llm.prompt_caching.provider is None
    assert foreign.detect_provider(llm) == "openai_compatible"
    with prompt_cache_session("t"):
        llm.chat([_user("q"), SYSTEM])
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "prompt_cache_key" not in body and "prompt_cache_retention" not in body


def test_chat_and_stream_chat_report_the_servers_cached_tokens(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    cold = llm.chat([SYSTEM, _user("first question")])
    warm = llm.chat([SYSTEM, _user("second question")])
    chunks = list(llm.stream_chat([SYSTEM, _user("third question")]))
    assert "".join(c.delta or "" for c in chunks)
    assert cold.raw.usage.prompt_tokens_details.cached_tokens == 0
    assert warm.raw.usage.prompt_tokens_details.cached_tokens > 0
    assert _bodies(emu)[-1]["stream_options"] == {"include_usage": True}  # else a stream reports no usage
    assert chunks[-1].raw.usage.prompt_tokens_details.cached_tokens > 0
    # the reported usage calibrates the wrapper's token estimator (the default is 4 characters a token)
    assert llm.prompt_caching.estimator.tokens("gpt-4o-mini", 40_000) != 10_000
    assert usage.total.calls == 3
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit > 0
    assert usage.total.input_tokens == emu.counters.prompt_tokens


async def test_achat_and_astream_chat(emu: Emulator, server: RunningServer, usage: CacheUsageHandler) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    with prompt_cache_session("s-9"):
        first = await llm.achat([SYSTEM, _user("one")])
        stream = await llm.astream_chat([_user("two"), SYSTEM])
        chunks = [c async for c in stream]
    assert first.message.content and chunks[-1].message.content
    bodies = _bodies(emu)
    assert [b["prompt_cache_key"] for b in bodies] == [prompt_cache_key_for("s-9")] * 2
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user"]
    assert usage.total.calls == 2
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit > 0


def test_complete_and_stream_complete_get_the_options(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", session_id="c")
    prompt = LONG_SYSTEM_PROMPT + "\n\nSummarise rule 1.1."
    assert llm.complete(prompt).text
    assert "".join(c.delta or "" for c in llm.stream_complete(prompt))
    assert [b["prompt_cache_key"] for b in _bodies(emu)] == [prompt_cache_key_for("c")] * 2
    assert usage.total.calls == 2
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit > 0


async def test_a_function_agent_reads_the_cache_from_its_second_call(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    agent = FunctionAgent(tools=[TOOLS[0], TOOLS[1]], llm=llm, system_prompt=LONG_SYSTEM_PROMPT)
    memory = ChatMemoryBuffer.from_defaults(token_limit=100_000)
    usage = CacheUsageHandler()
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(usage)
    try:
        with prompt_cache_session("agent-7"):
            for question in ["Weather in Paris?", "Weather in Rome?", "Add 2 and 3"]:
                await agent.run(question, memory=memory)
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not usage]
    bodies = _bodies(emu)
    assert len(bodies) >= 6  # each question: a tool call, then the answer
    assert [len(b["messages"]) for b in bodies] == sorted(len(b["messages"]) for b in bodies)  # history grows
    assert {b["prompt_cache_key"] for b in bodies} == {prompt_cache_key_for("agent-7")}
    assert all([t["function"]["name"] for t in b["tools"]] == ["alpha_add", "zeta_lookup"] for b in bodies)
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert len(reads) == len(bodies)  # one usage record per call: the streamed answers report usage too
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert sum(reads) == emu.counters.cached_tokens_implicit


def test_predict_and_call_goes_through_the_caching_layer(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", session_id="tools")
    output = llm.predict_and_call(TOOLS, "Add 2 and 3", chat_history=[SYSTEM])
    assert output.sources
    body = _bodies(emu)[-1]
    assert body["prompt_cache_key"] == prompt_cache_key_for("tools")
    assert [t["function"]["name"] for t in body["tools"]] == ["alpha_add", "zeta_lookup"]


def test_the_callback_manager_counts_each_call_once(emu: Emulator, server: RunningServer) -> None:
    counter = CachedTokenCountingHandler()
    llm = with_prompt_caching(_openai(server), provider="openai")
    llm.callback_manager = CallbackManager([counter])  # what Settings.llm does with Settings.callback_manager
    llm.chat([SYSTEM, _user("one")])
    list(llm.stream_chat([SYSTEM, _user("two")]))
    llm.complete("three")
    assert len(counter.llm_token_counts) == 3
    assert counter.cached_llm_token_count == emu.counters.cached_tokens_implicit > 0


def test_cache_points_are_portable_and_the_callers_messages_untouched(emu: Emulator, server: RunningServer) -> None:
    point = CachePoint(cache_control=CacheControl(type="ephemeral"))
    marked = ChatMessage(role="user", blocks=[TextBlock(text="a long document"), point])
    messages = [marked, SYSTEM]
    with pytest.raises(ValueError, match="Unsupported content block type"):
        _openai(server).chat(messages)  # the class on its own rejects them
    with_prompt_caching(_openai(server)).chat(messages)
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert messages == [marked, SYSTEM] and marked.blocks[-1] is point


def test_options_the_sdk_does_not_take_still_reach_the_body(
    emu: Emulator, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an older openai SDK without prompt_cache_* keywords: the options travel in extra_body
    monkeypatch.setattr(foreign, "_sdk_parameters", lambda endpoint: frozenset())
    llm = with_prompt_caching(_openai(server), provider="openai", retention="24h", session_id="old-sdk")
    llm.chat([SYSTEM, _user("q")])
    body = _bodies(emu)[-1]
    assert body["prompt_cache_key"] == prompt_cache_key_for("old-sdk")
    assert body["prompt_cache_retention"] == "24h"


def test_layout_off_sends_the_request_as_given(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", layout=False, session_id="s")
    llm.chat([_user("q"), SYSTEM])
    body = _bodies(emu)[-1]
    assert [m["role"] for m in body["messages"]] == ["user", "system"]
    assert "prompt_cache_key" not in body


def test_a_wrapped_llm_is_still_the_callers_class_and_the_original_is_unchanged(server: RunningServer) -> None:
    original = _openai(server)
    llm = with_prompt_caching(original, provider="openai")
    assert isinstance(llm, OpenAI) and isinstance(llm, FunctionCallingLLM) and isinstance(llm, PromptCachingLLM)
    assert type(original) is OpenAI and not isinstance(original, PromptCachingLLM)
    assert llm.model == "gpt-4o-mini" and llm.metadata.is_function_calling_model
    assert with_prompt_caching(llm) is llm
    assert "sk-test-key" not in repr(llm) and "api_key='**********'" in repr(llm)
    assert type(with_prompt_caching(_openai(server))) is type(llm)  # one subclass per class


def test_bad_input_is_rejected_before_anything_is_sent(emu: Emulator, server: RunningServer) -> None:
    with pytest.raises(ValueError, match="expected a LlamaIndex LLM"):
        with_prompt_caching("gpt-4o-mini")  # type: ignore[type-var]
    with pytest.raises(ValueError, match="provider: 'opnai' is not one of"):
        with_prompt_caching(_openai(server), provider="opnai")
    with pytest.raises(ValueError, match="retension: not a prompt-caching option; allowed: provider, layout"):
        with_prompt_caching(_openai(server), retension="24h")
    with pytest.raises(ValueError, match="retention: '1h' is not one of"):
        with_prompt_caching(_openai(server), retention="1h")
    with pytest.raises(ValueError, match="session_id: expected a non-empty string"):
        with_prompt_caching(_openai(server), session_id="")
    with pytest.raises(ValueError, match="session_id: expected a non-empty string"), prompt_cache_session(""):
        pass
    assert emu.counters.requests_total == 0


def test_concurrent_sessions_keep_their_own_keys(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")

    async def ask(session: str) -> None:
        with prompt_cache_session(session):
            await llm.achat([SYSTEM, _user(f"question of {session}")])

    async def main() -> None:
        await asyncio.gather(*(ask(f"user-{i}") for i in range(6)))

    asyncio.run(main())
    by_question = {b["messages"][-1]["content"]: b["prompt_cache_key"] for b in _bodies(emu)}
    assert by_question == {f"question of user-{i}": prompt_cache_key_for(f"user-{i}") for i in range(6)}


def test_a_wrapped_llm_pickles_as_the_callers_class_and_keeps_caching(emu: Emulator, server: RunningServer) -> None:
    import pickle

    llm = with_prompt_caching(_openai(server), provider="openai", session_id="pickled", retention="24h")
    loaded = pickle.loads(pickle.dumps(llm))  # what a multiprocess IngestionPipeline does with an extractor's LLM
    assert type(loaded) is type(llm) and loaded.prompt_caching is not llm.prompt_caching
    loaded.chat([SYSTEM, _user("q")])
    body = _bodies(emu)[-1]
    assert (body["prompt_cache_key"], body["prompt_cache_retention"]) == (prompt_cache_key_for("pickled"), "24h")
    assert isinstance(llm, PromptCachingLLM)  # the original is still wrapped


class Verdict(BaseModel):
    """A review verdict."""

    verdict: str


def test_structured_output_keeps_the_classes_own_path_and_goes_through_the_caching_layer(
    emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai", session_id="structured")
    assert isinstance(llm.structured_predict(Verdict, PromptTemplate("Review {code}"), code="x = 1"), Verdict)
    assert "response_format" in _bodies(emu)[-1]  # OpenAI's own json_schema path, not the generic tool program
    assert isinstance(llm.as_structured_llm(Verdict).chat([_user("review")]).raw, Verdict)
    assert [b["prompt_cache_key"] for b in _bodies(emu)] == [prompt_cache_key_for("structured")] * 2


def test_input_the_planner_cannot_read_is_left_to_the_llm(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    with pytest.raises(AttributeError, match="no attribute 'blocks'"):  # the class's own error, as unwrapped
        llm.chat([{"role": "user", "content": "q"}])  # type: ignore[list-item]
    assert emu.counters.requests_total == 0


def test_openai_itself_gets_the_key_without_forcing_the_provider(emu: Emulator) -> None:
    # the default base URL, api.openai.com, served in-process by the emulator's transport (no network)
    client = httpx.Client(transport=emu.transport())
    llm = with_prompt_caching(OpenAI(model="gpt-4o-mini", api_key="sk-test-key-0123456789", http_client=client))
    assert llm.api_base == "https://api.openai.com/v1"
    with prompt_cache_session("user-42"):
        llm.chat([_user("q"), SYSTEM])
    body = _bodies(emu)[-1]
    assert body["prompt_cache_key"] == prompt_cache_key_for("user-42")
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
