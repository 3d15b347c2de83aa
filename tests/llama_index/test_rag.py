"""The LLMs inside LlamaIndex's engines and agents, with both usage handlers, and the cache-friendly RAG pieces."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.memory import Memory
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import FunctionTool

from cache_integrations.llama_index import (
    CachedTokenCountingHandler,
    CacheFriendlyContextChatEngine,
    CacheUsageHandler,
    StableNodeOrder,
)
from cache_integrations.testing import Emulator, FakeClock

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from ..wire import cached_tokens, model_usages, prompt_tokens
from .conftest import make_gemini, make_glm

DOCS = [
    Document(text=f"Policy {i}: requests of type {i} are approved within {i + 2} days by team {i * 7}.", doc_id=f"d{i}")
    for i in range(6)
]


def _index(settings: Any) -> VectorStoreIndex:
    settings.embed_model = MockEmbedding(embed_dim=8)
    return VectorStoreIndex.from_documents(DOCS)


def _llm_requests(emu: Emulator) -> list[Any]:
    return [
        r for r in emu.requests if r.path.endswith(("/chat/completions", ":generateContent", ":streamGenerateContent"))
    ]


def _assert_cached_from_second_call(
    usage: CacheUsageHandler, counter: CachedTokenCountingHandler, emu: Emulator
) -> None:
    calls = usage.calls
    # one event per API call in both handlers: no double counting
    assert len(calls) == len(counter.llm_token_counts) == len(_llm_requests(emu)) >= 2
    sent = model_usages(emu)  # what the server sent for each call, in order
    assert [c.usage.cache_read_tokens for c in calls] == [cached_tokens(u) for u in sent]
    assert [c.usage.input_tokens for c in calls] == [prompt_tokens(u) for u in sent]
    assert cached_tokens(sent[0]) == 0 and all(cached_tokens(u) > 0 for u in sent[1:])  # the scenario
    assert counter.cached_llm_token_count == usage.total.cache_read_tokens == emu.counters.cached_tokens
    assert counter.prompt_llm_token_count == usage.total.input_tokens == emu.counters.prompt_tokens
    assert 0 < counter.cache_hit_rate == usage.total.hit_rate < 1
    assert usage.total.cost is not None and usage.total.saved is not None and usage.total.saved > 0
    model = calls[0].model
    assert model in usage.report() and model in counter.report()


@pytest.fixture(params=["glm", "gemini"])
def make_llm(request: pytest.FixtureRequest, emu: Emulator, clock: FakeClock) -> Callable[..., FunctionCallingLLM]:
    """A GLM, or a Gemini on implicit caching only (explicit caches are tested in test_gemini)."""

    def make(**kwargs: Any) -> FunctionCallingLLM:
        if request.param == "glm":
            return make_glm(emu, **kwargs)
        return make_gemini(emu, clock, cache_mode="off", **kwargs)

    return make


def test_query_engine_with_settings_llm(
    settings: Any, emu: Emulator, usage: CacheUsageHandler, make_llm: Callable[..., FunctionCallingLLM]
) -> None:
    counter = CachedTokenCountingHandler()
    settings.llm = make_llm(system_prompt=LONG_SYSTEM_PROMPT)  # Gemini caches implicitly from 1024 tokens
    settings.callback_manager = CallbackManager([counter])
    engine = _index(settings).as_query_engine(similarity_top_k=2, node_postprocessors=[StableNodeOrder()])
    answers = [engine.query(q) for q in ("How fast is type 1 approved?", "Who approves type 3?", "And type 5?")]
    assert all(str(a) for a in answers)
    _assert_cached_from_second_call(usage, counter, emu)
    # MockEmbedding retrieves the same nodes for every question; in a stable order they form one prefix
    assert usage.calls[1].usage.cache_read_tokens > 0.8 * usage.calls[1].usage.input_tokens


def test_stock_chat_engine_with_both_handlers(
    settings: Any, emu: Emulator, usage: CacheUsageHandler, make_llm: Callable[..., FunctionCallingLLM]
) -> None:
    counter = CachedTokenCountingHandler()
    settings.llm = make_llm()
    settings.callback_manager = CallbackManager([counter])
    engine = _index(settings).as_chat_engine(chat_mode="context", system_prompt=LONG_SYSTEM_PROMPT)
    assert isinstance(engine, ContextChatEngine)
    for q in ("What does policy 2 say?", "And policy 4?", "Summarize both."):
        assert engine.chat(q).response
    _assert_cached_from_second_call(usage, counter, emu)


def test_cache_friendly_chat_engine_keeps_requests_prefix_extensions(
    settings: Any, emu: Emulator, usage: CacheUsageHandler
) -> None:
    counter = CachedTokenCountingHandler()
    settings.llm = make_glm(emu)
    settings.callback_manager = CallbackManager([counter])
    engine = CacheFriendlyContextChatEngine.from_defaults(
        retriever=_index(settings).as_retriever(similarity_top_k=2), system_prompt=LONG_SYSTEM_PROMPT
    )
    questions = ["What does policy 2 say?", "And policy 4?", "Summarize both."]
    for q in questions:
        assert engine.chat(q).response
    _assert_cached_from_second_call(usage, counter, emu)
    bodies = [r.body["messages"] for r in emu.requests]
    for n, (before, after) in enumerate(itertools.pairwise(bodies)):
        assert before[0] == {"role": "system", "content": LONG_SYSTEM_PROMPT}
        assert after[: len(before) - 1] == before[:-1]  # system prompt and history: a strict prefix
        assert after[len(before) - 1] == {"role": "user", "content": questions[n]}  # history: the plain question
        last = after[-1]["content"]
        assert "Context information is below." in last and last.endswith(f"Question: {questions[n + 1]}")
        assert "Policy" in last
    # every call after the first reads the whole system prompt and history from the cache
    for call in usage.calls[1:]:
        assert call.usage.cache_read_tokens > 0.5 * call.usage.input_tokens
    assert [m.content for m in engine.chat_history[::2]] == questions


async def test_cache_friendly_chat_engine_streams(settings: Any, emu: Emulator, usage: CacheUsageHandler) -> None:
    llm = make_glm(emu)
    engine = CacheFriendlyContextChatEngine.from_defaults(
        retriever=_index(settings).as_retriever(similarity_top_k=2), llm=llm, system_prompt=LONG_SYSTEM_PROMPT
    )
    streamed = engine.stream_chat("What does policy 1 say?")
    text = "".join(streamed.response_gen)  # joins the thread that writes the history
    astreamed = await engine.astream_chat("And policy 3?")
    atext = "".join([t async for t in astreamed.async_response_gen()])  # awaits the history task
    reply = await engine.achat("Thanks, and policy 5?")
    assert text and atext and reply.response
    assert [m.role.value for m in engine.chat_history] == ["user", "assistant"] * 3
    assert engine.chat_history[1].content == text.strip()
    sent = model_usages(emu)
    assert usage.total.calls == 3 and all(cached_tokens(u) > 0 for u in sent[1:])
    assert [c.usage.cache_read_tokens for c in usage.calls] == [cached_tokens(u) for u in sent]


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}, 21 C."


def get_time(zone: str) -> str:
    """Current time in a time zone."""
    return f"It is 10:00 in {zone}."


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # llama-index-workflows inspects pydantic members
@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_over_several_steps(
    emu: Emulator, usage: CacheUsageHandler, streaming: bool, make_llm: Callable[..., FunctionCallingLLM]
) -> None:
    counter = CachedTokenCountingHandler()
    llm = make_llm(callback_manager=CallbackManager([counter]))
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_time)],
        llm=llm,
        system_prompt=LONG_SYSTEM_PROMPT,
        streaming=streaming,
    )
    memory = Memory.from_defaults(session_id="agent-test", token_limit=100_000)
    outputs = []
    for question in ("Use get_weather for Paris.", "Use get_time for CET.", "Use get_weather for Rome."):
        outputs.append(await agent.run(question, memory=memory))
    assert "Rome" in str(outputs[-1])
    # two LLM calls per run (tool call, then the answer), each cached from the second call on
    assert len(_llm_requests(emu)) == 6
    _assert_cached_from_second_call(usage, counter, emu)
    assert all(o.raw["usage"]["prompt_tokens_details"]["cached_tokens"] > 0 for o in outputs)
    history = await memory.aget_all()
    used = []
    for i, m in enumerate(history):
        assert not {"prompt_tokens", "cache_read_input_tokens"} & set(m.additional_kwargs)  # no usage in memory
        if m.role == "tool":
            (call,) = [b for b in history[i - 1].blocks if isinstance(b, ToolCallBlock)]
            assert m.additional_kwargs["tool_call_id"] == call.tool_call_id
            used.append(call.tool_name)
    assert used == ["get_weather", "get_time", "get_weather"]
    # each request extends the previous one on the wire: the agent's loop is prefix-stable
    bodies = [r.body for r in _llm_requests(emu)]
    turns = "messages" if "messages" in bodies[0] else "contents"
    for before, after in itertools.pairwise(bodies):
        assert after[turns][: len(before[turns])] == before[turns]
        assert after["tools"] == before["tools"]


def _nws(node_id: str, score: float, **metadata: Any) -> NodeWithScore:
    return NodeWithScore(node=TextNode(id_=node_id, text=node_id, metadata=metadata), score=score)


def test_stable_node_order() -> None:
    nodes = [
        _nws("c", 0.9, file="b.md", page=10),
        _nws("a", 0.8, file="a.md", page=2),
        _nws("b", 0.7, file="b.md", page=9),
    ]
    assert [n.node.node_id for n in StableNodeOrder().postprocess_nodes(nodes)] == ["a", "b", "c"]
    by_source = StableNodeOrder(key=["file", "page"]).postprocess_nodes(list(reversed(nodes)))
    assert [n.node.node_id for n in by_source] == ["a", "b", "c"]  # page 9 before page 10: numbers sort as numbers
    mixed = [_nws("x", 0.5, file="z.md"), _nws("y", 0.4), *nodes, nodes[0]]
    ordered = StableNodeOrder(key="file").postprocess_nodes(mixed)
    assert [n.node.node_id for n in ordered] == ["a", "b", "c", "x", "y"]  # missing key last, duplicates once


def test_cache_friendly_engine_beats_the_stock_engine() -> None:
    from bench.llama_index_chat import measure

    stock, friendly = measure(turns=3)
    assert stock["engine"].startswith("ContextChatEngine") and friendly["engine"] == "CacheFriendlyContextChatEngine"
    assert friendly["efficiency"] > stock["efficiency"]
    assert friendly["efficiency"] > 0.9 and friendly["cached_tokens"] > 2 * stock["cached_tokens"]
