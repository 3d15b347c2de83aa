"""`with_prompt_caching` and `PromptCachingMiddleware` on the real `ChatAnthropic`, against the emulator over HTTP.

Every request is checked on the wire: at most 4 breakpoints (the top-level automatic one included), none whose
prefix is below the model's minimum, and no 1-hour breakpoint after a 5-minute one (the emulator answers those
with Anthropic's 400s anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_anthropic.middleware import AnthropicPromptCachingMiddleware
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from cache_integrations.langchain import PromptCachingMiddleware, get_cache_usage_callback, with_prompt_caching
from cache_integrations.langchain._anthropic import mark_message
from cache_integrations.testing import Emulator, RunningServer
from cache_integrations.testing._anthropic_cache import flatten, min_cacheable_tokens

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

MODEL = "claude-sonnet-4-6"  # 1024-token minimum
SYSTEM = " ".join(f"Rule {i}: answer carefully and cite the tool output." for i in range(150))  # ~1650 tokens
FIVE = {"type": "ephemeral", "ttl": "5m"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def chat(server: RunningServer, **kwargs: Any) -> ChatAnthropic:
    settings: dict[str, Any] = {"model": MODEL, "api_key": "sk-ant-test", "max_retries": 0, **kwargs}
    return ChatAnthropic(base_url=server.anthropic_base_url, **settings)


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}, 24 C"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Verdict(BaseModel):
    """A review verdict."""

    verdict: str


def bodies(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.endpoint == "anthropic" and r.path.endswith("/messages")]


def markers(body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every breakpoint of a request body, in prefix order: (where, cache_control); the automatic one last."""
    blocks, _ = flatten(body, Emulator().tokenizer)
    out = [(b.path, dict(b.cache_control)) for b in blocks if b.cache_control is not None]
    if body.get("cache_control") is not None:
        out.append(("automatic", dict(body["cache_control"])))
    return out


def check_breakpoints(emu: Emulator, body: Mapping[str, Any]) -> None:
    """At most 4, none below the model's minimum, no 1h after 5m."""
    found = markers(body)
    assert len(found) <= 4, found
    blocks, _ = flatten(body, emu.tokenizer)
    running, ends = 0, {}
    for b in blocks:
        running += b.tokens
        ends[b.path] = running
    minimum = min_cacheable_tokens(str(body["model"]))
    for where, _ in found:
        if where != "automatic":
            assert ends[where] >= minimum, f"{where}: {ends[where]} tokens, below {minimum}"
    ttls = [c.get("ttl", "5m") for _, c in found]
    assert "1h" not in ttls[ttls.index("5m") :] if "5m" in ttls else True, ttls


def cache_numbers(message: BaseMessage) -> tuple[int, int]:
    """(cache read, cache write) as ChatAnthropic reports them."""
    assert isinstance(message, AIMessage) and message.usage_metadata is not None
    details: Any = message.usage_metadata.get("input_token_details") or {}
    written = sum(
        int(details.get(k) or 0) for k in ("cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
    )
    return int(details.get("cache_read") or 0), written


# ------------------------------------------------------------------------------------------ wrapper


def test_marks_the_system_prompt_and_the_request_end_and_reads_from_the_second_call(
    emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(chat(server))
    history: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage("What do the rules say about tools?")]
    with get_cache_usage_callback() as usage:
        for question in ("And about citations?", "Summarise rule 3."):
            answer = llm.invoke(history)
            history += [answer, HumanMessage(question)]
        llm.invoke(history)
    sent = bodies(emu)
    for body in sent:
        check_breakpoints(emu, body)
        assert markers(body) == [("system.0", FIVE), ("automatic", FIVE)]
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert reads == sorted(reads)  # each call reads what the previous one wrote
    counters = emu.counters
    assert usage.total.cache_read_tokens == counters.cached_tokens_by_endpoint["anthropic"]
    assert usage.total.cache_write_tokens == counters.cache_write_tokens_by_endpoint["anthropic"] > 0


def test_stream_and_async_report_the_servers_cache_usage(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server, stream_usage=True))
    with get_cache_usage_callback() as usage:
        llm.invoke([SystemMessage(SYSTEM), HumanMessage("first")])
        chunks = list(llm.stream([SystemMessage(SYSTEM), HumanMessage("second")]))
    assert "".join(str(c.content) for c in chunks)
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert streamed.usage_metadata is not None
    assert cache_numbers(AIMessage(content="", usage_metadata=streamed.usage_metadata))[0] > 1500
    for body in bodies(emu):
        check_breakpoints(emu, body)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["anthropic"] > 0
    assert usage.total.cache_write_tokens == emu.counters.cache_write_tokens_by_endpoint["anthropic"]


async def test_async_invoke_and_stream(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server))
    first = await llm.ainvoke([SystemMessage(SYSTEM), HumanMessage("one")])
    chunks = [c async for c in llm.astream([SystemMessage(SYSTEM), HumanMessage("two")])]
    assert cache_numbers(first) == (0, cache_numbers(first)[1]) and cache_numbers(first)[1] > 1500
    assert sum(len(str(c.content)) for c in chunks) > 0
    assert all(markers(b)[0] == ("system.0", FIVE) for b in bodies(emu))
    assert emu.counters.cached_tokens_by_endpoint["anthropic"] > 1500


def test_tools_structured_output_and_a_tool_loop(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server))
    bound = llm.bind_tools([get_weather, add])
    history: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage("What is the weather in Oslo? Use get_weather.")]
    answer = bound.invoke(history)
    assert isinstance(answer, AIMessage) and answer.tool_calls
    history += [
        answer,
        ToolMessage(get_weather.invoke(answer.tool_calls[0]["args"]), tool_call_id=answer.tool_calls[0]["id"]),
    ]
    final = bound.invoke(history)
    assert "get_weather" in str(final.content)
    verdict = llm.with_structured_output(Verdict).invoke([SystemMessage(SYSTEM), HumanMessage("verdict?")])
    assert isinstance(verdict, Verdict)
    sent = bodies(emu)
    assert [t["name"] for t in sent[0]["tools"]] == ["add", "get_weather"]  # the layout's stable tool order
    for body in sent:
        check_breakpoints(emu, body)
    assert cache_numbers(final)[0] >= cache_numbers(answer)[1] > 0  # the tool loop reads the first call


def test_without_a_system_prompt_the_last_tool_is_marked(emu: Emulator, server: RunningServer) -> None:
    handbook = get_weather.model_copy(update={"name": "handbook", "description": SYSTEM})  # cacheable tools
    llm = with_prompt_caching(chat(server)).bind_tools([get_weather, handbook])
    llm.invoke([HumanMessage("hi")])
    second = llm.invoke([HumanMessage("hello")])
    body = bodies(emu)[-1]
    assert markers(body) == [("tools.1", FIVE), ("automatic", FIVE)]
    check_breakpoints(emu, body)
    assert cache_numbers(second)[0] > 1500


def test_never_marks_below_the_minimum(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server))
    llm.invoke([SystemMessage("Be brief."), HumanMessage("hi")])
    assert markers(bodies(emu)[-1]) == []
    # A model with a 4096-token minimum skips the ~1650-token system prompt Sonnet marks.
    haiku = with_prompt_caching(chat(server, model="claude-haiku-4-5"))
    haiku.invoke([SystemMessage(SYSTEM), HumanMessage("hi")])
    assert markers(bodies(emu)[-1]) == []
    assert emu.counters.cache_write_tokens_by_endpoint["anthropic"] == 0


def test_markers_the_caller_placed_count_toward_four_and_their_ttls_are_respected(
    emu: Emulator, server: RunningServer
) -> None:
    llm = with_prompt_caching(chat(server))
    doc = {"type": "text", "text": SYSTEM.replace("Rule", "Clause")}
    # The caller marks a document with a 1-hour TTL: our system breakpoint before it must be 1 hour too.
    marked = HumanMessage([{**doc, "cache_control": HOUR}, {"type": "text", "text": "What does clause 7 say?"}])
    llm.invoke([SystemMessage(SYSTEM), marked])
    body = bodies(emu)[-1]
    # (The caller's marker closes that message for the strategy: no end-of-request marker is added after it.)
    assert markers(body) == [("system.0", HOUR), ("messages.0.content.0", HOUR)]
    # Three marked documents and a top-level marker of the caller: nothing left to add.
    docs = [HumanMessage([{**doc, "text": f"{doc['text']} v{i}", "cache_control": FIVE}]) for i in range(3)]
    llm.invoke([SystemMessage(SYSTEM), *docs, HumanMessage("q")], cache_control=FIVE)
    body = bodies(emu)[-1]
    assert len(markers(body)) == 4 and ("system.0", FIVE) not in markers(body)
    # A marked tool counts too.
    tools = [{"name": "lookup", "description": "Look up.", "input_schema": {"type": "object"}, "cache_control": FIVE}]
    llm.bind_tools(tools).invoke([SystemMessage(SYSTEM), *docs[:2], HumanMessage("q")])
    body = bodies(emu)[-1]
    assert len(markers(body)) == 4 and body["tools"][0]["cache_control"] == FIVE
    for body in bodies(emu)[:2]:  # (the caller's own tool marker is below the minimum: their choice)
        check_breakpoints(emu, body)


def test_the_callers_messages_are_never_changed(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server)).bind_tools([get_weather])
    question = HumanMessage([{"type": "text", "text": "Weather in Rome? Use get_weather."}])
    history: list[BaseMessage] = [SystemMessage([{"type": "text", "text": SYSTEM}]), question]
    answer = llm.invoke(history)
    assert isinstance(answer, AIMessage)
    history += [answer, ToolMessage("Sunny", tool_call_id=answer.tool_calls[0]["id"])]
    history += [AIMessage("It is sunny."), HumanMessage([{"type": "text", "text": f"page {p}"} for p in range(25)])]
    before = copy.deepcopy(history)
    llm.invoke(history)
    llm.invoke(history)
    assert history == before
    # The system prompt and (past the lookback) the first question were marked, on copies.
    assert markers(bodies(emu)[-1])[:2] == [("system.0", FIVE), ("messages.0.content.0", FIVE)]


@pytest.mark.parametrize(
    "message",
    [
        SystemMessage(SYSTEM),
        SystemMessage(["Be brief.", {"type": "text", "text": "Cite sources."}]),
        HumanMessage("plain question"),
        HumanMessage([{"type": "text", "text": "look"}, {"type": "text", "text": "  "}]),
        HumanMessage([{"type": "image", "base64": "aGVsbG8=", "mime_type": "image/png"}]),
        ToolMessage("Sunny", tool_call_id="toolu_01"),
        ToolMessage([{"type": "text", "text": "Sunny"}], tool_call_id="toolu_01", status="error"),
        AIMessage("I will check.", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "toolu_01"}]),
        AIMessage("Done."),
    ],
    ids=["system", "system-list", "human", "human-blank-last", "image", "tool", "tool-list-error", "ai-calls", "ai"],
)
def test_a_marked_copy_sends_the_same_prompt_with_one_marker(message: BaseMessage) -> None:
    model = ChatAnthropic(model=MODEL, api_key="sk-ant-test")  # type: ignore[call-arg]
    context: list[BaseMessage] = [HumanMessage("before")] if message.type != "system" else []
    if isinstance(message, ToolMessage):
        context.append(AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "toolu_01"}]))
    tail: list[BaseMessage] = [HumanMessage("after")] if message.type in ("ai", "system") else []
    marked = mark_message(message, FIVE)
    assert marked is not None and marked is not message
    plain = model._get_request_payload([*context, message, *tail])
    sent = model._get_request_payload([*context, marked, *tail])
    found = [b for b in markers(sent) if b[0] != "automatic"]
    assert len(found) == 1 and found[0][1] == FIVE
    assert _stripped(sent) == _stripped(plain)


def _stripped(payload: Mapping[str, Any]) -> Any:
    """The request as the cache sees it: without markers, a string content the same as one text block."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = strip(payload)
    for key in ("system",):
        if isinstance(out.get(key), str):
            out[key] = [{"type": "text", "text": out[key]}]
    for message in out["messages"]:
        if isinstance(message["content"], str):
            message["content"] = [{"type": "text", "text": message["content"]}]
    return out


# ------------------------------------------------------------------------------------------ agents


def _agent(server: RunningServer, middleware: Any, **kwargs: Any) -> Any:
    return create_agent(chat(server, **kwargs), [get_weather, add], system_prompt=SYSTEM, middleware=[middleware])


def test_agent_loop_of_six_calls_reads_from_the_second_call(emu: Emulator, server: RunningServer) -> None:
    agent = _agent(server, PromptCachingMiddleware())
    history: list[BaseMessage] = []
    with get_cache_usage_callback() as usage:
        for question in ("Weather in Florence?", "And in Oslo?", "What about Rome?"):
            history = agent.invoke({"messages": [*history, HumanMessage(question)]})["messages"]
    calls = [m for m in history if isinstance(m, AIMessage)]
    assert len(calls) == 6 and [bool(m.tool_calls) for m in calls] == [True, False] * 3
    reads = [cache_numbers(m)[0] for m in calls]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    for body in bodies(emu):
        check_breakpoints(emu, body)
        assert markers(body)[0] == ("system.0", FIVE) and markers(body)[-1] == ("automatic", FIVE)
    assert [c.usage.cache_read_tokens for c in usage.calls] == reads
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["anthropic"]
    assert usage.total.cache_write_tokens == emu.counters.cache_write_tokens_by_endpoint["anthropic"]


async def test_agent_async_stream(emu: Emulator, server: RunningServer) -> None:
    agent = _agent(server, PromptCachingMiddleware(), streaming=True)
    async for _ in agent.astream({"messages": [HumanMessage("Weather in Lima?")]}, stream_mode="messages"):
        pass
    sent = bodies(emu)
    assert len(sent) == 2 and all(b.get("stream") for b in sent)
    assert emu.counters.cached_tokens_by_endpoint["anthropic"] > 1500


def _pages(n: int) -> HumanMessage:
    return HumanMessage([{"type": "text", "text": f"Page {p}: the forecast table, row {p}."} for p in range(n)])


def _run_past_the_lookback(server: RunningServer, middleware: Any) -> list[tuple[int, int]]:
    """Turn 1: a question, a tool call, an answer. Turn 2 adds an answer and 25 blocks (a 25-page paste)."""
    agent = _agent(server, middleware)
    history = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})["messages"]
    history = agent.invoke({"messages": [*history, _pages(25)]})["messages"]
    return [cache_numbers(m) for m in history if isinstance(m, AIMessage)]


def test_a_turn_adding_more_than_20_blocks_still_reads_the_conversation(server: RunningServer, emu: Emulator) -> None:
    ours = _run_past_the_lookback(server, PromptCachingMiddleware())
    body = bodies(emu)[2]  # the first call of turn 2
    assert ("messages.2.content.0", FIVE) in markers(body)  # the previous request's end: the tool result
    check_breakpoints(emu, body)
    emu.reset_counters()
    emu.clear_requests()
    peer = _run_past_the_lookback(server, AnthropicPromptCachingMiddleware())
    # Ours reads everything the previous request held (what it read plus what it wrote); the peer's automatic
    # breakpoint looks back 20 blocks, finds nothing, reads only the tools and system prompt and writes the
    # conversation again.
    assert ours[2][0] == ours[1][0] + ours[1][1]
    assert peer[2][0] < peer[1][0] + peer[1][1]
    assert ours[2][0] > peer[2][0] and ours[2][1] < peer[2][1]


def test_the_middleware_marks_base_tools_through_extras_without_a_system_prompt(
    emu: Emulator, server: RunningServer
) -> None:
    handbook = get_weather.model_copy(update={"name": "handbook", "description": SYSTEM})
    agent = create_agent(chat(server), [handbook, add], middleware=[PromptCachingMiddleware()])
    agent.invoke({"messages": [HumanMessage("Add 2 and 3 with add.")]})
    first = bodies(emu)[0]
    assert [t["name"] for t in first["tools"]] == ["add", "handbook"]
    assert markers(first) == [("tools.1", FIVE), ("automatic", FIVE)]
    assert handbook.extras is None or "cache_control" not in handbook.extras  # the caller's tool is untouched


# ------------------------------------------------------------------------------------------ batch


class _Order(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append("start")

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append("end")


def test_a_cold_batch_of_20_sends_one_first_then_reads(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(chat(server))
    order = _Order()
    inputs = [[SystemMessage(SYSTEM), HumanMessage(f"Question {i}: which rule covers case {i}?")] for i in range(20)]
    with get_cache_usage_callback() as usage:
        answers = llm.batch(inputs, config={"callbacks": [order], "max_concurrency": 8})
    assert len(answers) == 20
    assert order.events[:2] == ["start", "end"]  # the warm-up request answered before the others left
    reads = [cache_numbers(a)[0] for a in answers]
    assert reads.count(0) == 1 and all(r > 1500 for r in reads if r)
    writes = [cache_numbers(a)[1] for a in answers]
    assert max(writes) > 1500 and sorted(writes)[-2] < 100  # the system prompt is written once
    for body in bodies(emu):
        check_breakpoints(emu, body)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["anthropic"]


def test_a_marked_tool_message_still_converts_for_the_handler() -> None:
    """The handler and diagnostics read the messages the agent sends, marked ones included."""
    from cache_integrations.langchain._convert import messages_from_langchain

    call = AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "toolu_01"}])
    marked = mark_message(ToolMessage("Sunny", tool_call_id="toolu_01"), FIVE)
    assert marked is not None
    neutral = messages_from_langchain([HumanMessage("q"), call, marked])
    assert neutral[-1].role == "tool" and neutral[-1].text == "Sunny" and neutral[-1].cache_point
