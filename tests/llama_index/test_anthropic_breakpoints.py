"""The Anthropic applier for LlamaIndex (`place_breakpoints`) on the real llama-index-llms-anthropic `Anthropic`,
against the emulator over loopback HTTP.

`Call` has the fields of the LlamaIndex `with_prompt_caching`'s call that an applier reads and replaces; `send`
is that coordinator's loop in three lines (plan on the neutral request, lay out, apply, send, observe).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from llama_index.core.base.llms.types import CacheControl, CachePoint, ChatMessage, MessageRole, TextBlock
from llama_index.llms.anthropic import Anthropic

from cache_integrations.llama_index._anthropic import caller_markers, place_breakpoints, system_text
from cache_integrations.llama_index._convert import messages_from_llama_index, tool_from_llama_index
from cache_integrations.llama_index.handlers import usage_from_llama_index
from cache_integrations.messages import ChatRequest
from cache_integrations.strategies import AnthropicBreakpointStrategy, CallContext
from cache_integrations.testing import Emulator, RunningServer
from cache_integrations.testing._anthropic_cache import flatten

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

MODEL = "claude-sonnet-4-6"
CTX = CallContext(provider="anthropic", model=MODEL)
SYSTEM = " ".join(f"Rule {i}: answer carefully and cite the tool output." for i in range(150))  # ~1650 tokens
FIVE = {"type": "ephemeral", "ttl": "5m"}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass(frozen=True)
class Call:
    llm: Any
    messages: tuple[ChatMessage, ...]
    tools: tuple[Any, ...] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    session: str | None = None
    stream: bool = False
    completion: bool = False


@pytest.fixture
def emu() -> Emulator:  # overrides the package's in-process emulator: this one is served over loopback
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


@pytest.fixture
def llm(server: RunningServer) -> Anthropic:
    return Anthropic(model=MODEL, base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0)


def send(
    llm: Anthropic,
    strategy: AnthropicBreakpointStrategy,
    messages: list[ChatMessage],
    tools: list[Any] | None = None,
    **settings: Any,
) -> Any:
    request = ChatRequest(
        MODEL, messages_from_llama_index(messages), tuple(tool_from_llama_index(t) for t in tools or ())
    )
    plan = strategy.plan(request, CTX)
    laid = tuple(messages[i] for i in plan.order)
    call = place_breakpoints(Call(llm, laid, None if tools is None else tuple(tools), settings), plan)
    kwargs = dict(call.settings)
    if call.tools is not None:
        kwargs["tools"] = list(call.tools)
    response = llm.chat(list(call.messages), **kwargs)
    strategy.observe(request, CTX, plan, usage_from_llama_index(response))
    return response


def markers(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    blocks, _ = flatten(body, Emulator().tokenizer)
    out = [(b.path, b.cache_control) for b in blocks if b.cache_control is not None]
    return [*out, ("automatic", body["cache_control"])] if body.get("cache_control") else out


def usage(response: Any) -> tuple[int, int]:
    raw = response.raw["usage"]
    return raw.cache_read_input_tokens, raw.cache_creation_input_tokens


def test_the_system_prompt_is_marked_through_extra_body_and_read_from_the_second_call(
    llm: Anthropic, emu: Emulator
) -> None:
    strategy = AnthropicBreakpointStrategy()
    history = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="What do rule 3 say?")]
    first = send(llm, strategy, history)
    history += [first.message, ChatMessage(role="user", content="And rule 4?")]
    second = send(llm, strategy, history)
    body = emu.requests[-1].body
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": FIVE}]  # the same text
    assert markers(body) == [("system.0", FIVE), ("automatic", FIVE)]
    read1, written1 = usage(first)
    read2, written2 = usage(second)
    assert read1 == 0 and written1 > 1500
    assert read2 == written1 and written2 > 0  # the whole first request, then the new turn written
    assert emu.counters.cached_tokens_by_endpoint["anthropic"] == read2


def test_an_agent_loop_ending_in_tool_results_keeps_reading(llm: Anthropic, emu: Emulator) -> None:
    strategy = AnthropicBreakpointStrategy()
    history = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="Weather in Rome?")]
    reads = []
    for _ in range(3):
        answer = send(llm, strategy, history, tools=[WEATHER])
        reads.append(usage(answer)[0])
        history.append(answer.message)
        calls = llm.get_tool_calls_from_response(answer, error_on_no_tool_call=False)
        if not calls:
            history.append(ChatMessage(role="user", content="And Oslo?"))
            continue
        for call in calls:
            history.append(
                ChatMessage(
                    role="tool",
                    content=f"Sunny in {call.tool_kwargs}",
                    additional_kwargs={"tool_call_id": call.tool_id},
                )
            )
    assert reads[0] == 0 and all(r > 0 for r in reads[1:]) and reads == sorted(reads)
    for request in emu.requests:
        found = markers(request.body)
        assert len(found) <= 4
        # Never inside a tool_result's content: the API refuses markers there.
        for message in request.body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                inner = block.get("content") if block.get("type") == "tool_result" else None
                assert not any("cache_control" in b for b in inner or [] if isinstance(b, dict))
    # The request's end after tool results is the automatic marker: on the tool_result block itself.
    assert emu.requests[1].body["messages"][-1]["content"][0]["type"] == "tool_result"
    assert emu.requests[1].body["cache_control"] == FIVE


def test_a_turn_past_the_lookback_marks_the_previous_end_with_a_cache_point(llm: Anthropic, emu: Emulator) -> None:
    strategy = AnthropicBreakpointStrategy()
    question = ChatMessage(role="user", content="Summarise the rules.")
    history = [ChatMessage(role="system", content=SYSTEM), question]
    first = send(llm, strategy, history)
    pages = ChatMessage(role="user", blocks=[TextBlock(text=f"Page {p}: table row {p}.") for p in range(25)])
    before = copy.deepcopy([*history, first.message, pages])
    second = send(llm, strategy, [*history, first.message, pages])
    assert [*history, first.message, pages] == before  # the caller's messages are unchanged
    body = emu.requests[-1].body
    assert ("messages.0.content.0", FIVE) in markers(body)
    assert len(markers(body)) == 3
    assert usage(second)[0] == sum(usage(first))  # everything the first request held


def test_the_callers_markers_count_and_an_llm_with_cache_idx_is_left_alone(
    llm: Anthropic, server: RunningServer, emu: Emulator
) -> None:
    strategy = AnthropicBreakpointStrategy()
    docs = [
        ChatMessage(
            role="user",
            blocks=[
                TextBlock(text=f"{SYSTEM} v{i}"),
                CachePoint(cache_control=CacheControl(type="ephemeral", ttl="1h")),
            ],
        )
        for i in range(3)
    ]
    send(llm, strategy, [ChatMessage(role="system", content=SYSTEM), *docs, ChatMessage(role="user", content="q")])
    body = emu.requests[-1].body
    # 3 caller markers (1 hour) leave room for one: the request's end (5 minutes, after them: valid).
    assert markers(body)[-1] == ("automatic", FIVE) and len(markers(body)) == 4
    # One caller marker of 1 hour: our system breakpoint before it must be 1 hour too (else a 400).
    send(llm, strategy, [ChatMessage(role="system", content=SYSTEM), docs[0], ChatMessage(role="user", content="q")])
    assert markers(emu.requests[-1].body)[0] == ("system.0", {"type": "ephemeral", "ttl": "1h"})
    own = Anthropic(model=MODEL, base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0, cache_idx=0)
    call = Call(own, (ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="q")))
    plan = strategy.plan(ChatRequest(MODEL, messages_from_llama_index(list(call.messages))), CTX)
    assert plan.breakpoints and place_breakpoints(call, plan) is call


def test_without_a_system_prompt_the_last_tool_dict_is_marked(llm: Anthropic, emu: Emulator) -> None:
    strategy = AnthropicBreakpointStrategy()
    handbook = {**WEATHER, "name": "handbook", "description": SYSTEM}
    send(llm, strategy, [ChatMessage(role="user", content="hi")], tools=[WEATHER, handbook])
    answer = send(llm, strategy, [ChatMessage(role="user", content="hello")], tools=[WEATHER, handbook])
    body = emu.requests[-1].body
    assert [t["name"] for t in body["tools"]] == ["get_weather", "handbook"]
    assert markers(body)[0] == ("tools.1", FIVE)
    assert usage(answer)[0] > 1500


def test_caller_markers_and_system_text_follow_the_package() -> None:
    messages = (
        ChatMessage(
            role="system", blocks=[TextBlock(text="a"), CachePoint(cache_control=CacheControl(type="ephemeral"))]
        ),
        ChatMessage(role=MessageRole.SYSTEM, content="b"),
        ChatMessage(role="user", content="q", additional_kwargs={"cache_control": {"type": "ephemeral", "ttl": "1h"}}),
    )
    assert system_text(messages) == "a\nb"
    count, ttls = caller_markers(Call(None, messages, ({**WEATHER, "cache_control": FIVE},), {}))
    assert count == 2 and ttls == {-1: "5m", 2: "1h"}  # the system CachePoint is dropped by the package


def test_a_tool_message_is_never_marked_inside_its_tool_result(llm: Anthropic, emu: Emulator) -> None:
    """The previous request ended in a tool result and the next turn adds 25 blocks: the API refuses a marker
    inside the tool_result's content and the package has no other place for it, so that breakpoint is dropped
    (the system prompt still reads)."""
    strategy = AnthropicBreakpointStrategy()
    history = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="Weather in Rome?")]
    answer = send(llm, strategy, history, tools=[WEATHER])
    (call,) = llm.get_tool_calls_from_response(answer)
    history += [
        answer.message,
        ChatMessage(role="tool", content="Sunny", additional_kwargs={"tool_call_id": call.tool_id}),
    ]
    send(llm, strategy, history, tools=[WEATHER])
    pages = ChatMessage(role="user", blocks=[TextBlock(text=f"Page {p}: table row {p}.") for p in range(25)])
    last = send(llm, strategy, [*history, ChatMessage(role="assistant", content="Sunny."), pages], tools=[WEATHER])
    body = emu.requests[-1].body
    tool_result = body["messages"][2]["content"][0]
    assert tool_result["type"] == "tool_result" and "cache_control" not in json.dumps(tool_result)
    assert markers(body) == [("system.0", FIVE), ("automatic", FIVE)]
    assert usage(last)[0] > 1500
