"""The real partner packages against the emulator's Anthropic route over loopback HTTP.

``langchain_anthropic.ChatAnthropic`` (invoke, stream, and a ``create_agent`` loop with
``AnthropicPromptCachingMiddleware``) and LlamaIndex ``Anthropic`` must see Anthropic's cache usage
exactly as the emulator served it: these are the peers the library's own strategy is measured against.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_anthropic.middleware import AnthropicPromptCachingMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from cache_integrations.testing import Emulator, RunningServer

MODEL = "claude-sonnet-4-6"  # 1024-token minimum
SYSTEM = " ".join(f"Rule {i}: answer carefully and cite the tool output." for i in range(150))  # ~1650 tokens


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def chat_model(server: RunningServer, **kwargs: Any) -> ChatAnthropic:
    return ChatAnthropic(  # type: ignore[call-arg]
        model=MODEL, base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0, **kwargs
    )


def cache_numbers(message: BaseMessage) -> tuple[int, int]:
    """(cache read, cache write) as LangChain reports them from Anthropic's usage."""
    assert isinstance(message, AIMessage) and message.usage_metadata is not None
    details: Any = message.usage_metadata.get("input_token_details") or {}
    written = (
        (details.get("ephemeral_5m_input_tokens") or 0)
        + (details.get("ephemeral_1h_input_tokens") or 0)
        + (details.get("cache_creation") or 0)
    )
    return int(details.get("cache_read") or 0), int(written)


def test_chat_anthropic_invoke_reads_the_system_entry(server: RunningServer, emu: Emulator) -> None:
    llm = chat_model(server)
    system = SystemMessage(content=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])
    first = llm.invoke([system, HumanMessage("First question?")])
    second = llm.invoke([system, HumanMessage("Second question?")])
    read1, written1 = cache_numbers(first)
    read2, written2 = cache_numbers(second)
    assert (read1, written2) == (0, 0)
    assert read2 == written1 > 1500
    assert second.usage_metadata is not None
    # LangChain adds cached and written tokens back into its input total; the emulator counts whole prompts.
    assert emu.counters.prompt_tokens == sum(m.usage_metadata["input_tokens"] for m in (first, second))  # type: ignore[index]
    assert emu.counters.cached_tokens_by_endpoint["anthropic"] == read2


def test_chat_anthropic_stream_reports_cache_usage_from_message_delta(server: RunningServer) -> None:
    llm = chat_model(server, streaming=True, stream_usage=True)
    messages: list[BaseMessage] = [SystemMessage(SYSTEM), HumanMessage("Stream please")]
    llm.invoke(messages, cache_control={"type": "ephemeral"})  # top-level automatic caching
    chunks = list(llm.stream(messages, cache_control={"type": "ephemeral"}))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk  # type: ignore[assignment]
    read, written = cache_numbers(AIMessage(content=total.content, usage_metadata=total.usage_metadata))
    assert read > 1500 and written == 0
    assert "Emulated reply" in total.text


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}, 24 C"


def test_create_agent_with_anthropic_prompt_caching_middleware(server: RunningServer, emu: Emulator) -> None:
    """Six model calls (three turns, each a tool call then an answer) through the middleware.

    The middleware tags the last tool and the last system block and sets the top-level automatic
    ``cache_control``; from the second call on every call must read the previous call's prefix.
    """
    agent = create_agent(
        chat_model(server), [get_weather], system_prompt=SYSTEM, middleware=[AnthropicPromptCachingMiddleware()]
    )
    history: list[BaseMessage] = []
    for question in ("What is the weather in Florence?", "And in Oslo?", "What about Rome?"):
        state = agent.invoke({"messages": [*history, HumanMessage(question)]})
        history = state["messages"]
    calls = [m for m in history if isinstance(m, AIMessage)]
    assert len(calls) == 6 and [bool(m.tool_calls) for m in calls] == [True, False] * 3
    numbers = [cache_numbers(m) for m in calls]
    print("\nAnthropicPromptCachingMiddleware per call (read, write):", numbers)
    reads = [r for r, _ in numbers]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:])
    assert reads == sorted(reads)  # each call reads the prefix the previous one wrote
    for (read, _), (prev_read, prev_written) in zip(numbers[1:], numbers, strict=False):
        assert read == prev_read + prev_written
    sent = [r.body for r in emu.requests if r.endpoint == "anthropic"]
    assert len(sent) == 6
    for body in sent:
        assert body["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
        assert body["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    counters = emu.counters
    assert counters.cached_tokens_by_endpoint["anthropic"] == sum(reads)
    assert counters.cache_write_tokens_by_endpoint["anthropic"] == sum(w for _, w in numbers)


def test_llama_index_anthropic_cache_point(server: RunningServer, emu: Emulator) -> None:
    """llama-index-llms-anthropic 0.12.3 keeps a `CachePoint` only in user / assistant blocks.

    A system message is flattened to a plain `system` string, so a `CachePoint` in it is dropped (nothing is
    written); after a user block it becomes that block's `cache_control` and a later question reads it.
    """
    from llama_index.core.base.llms.types import CacheControl, CachePoint, ChatMessage, TextBlock
    from llama_index.llms.anthropic import Anthropic

    llm = Anthropic(model=MODEL, base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    point = CachePoint(cache_control=CacheControl(type="ephemeral"))
    system = ChatMessage(role="system", blocks=[TextBlock(text=SYSTEM), point])
    dropped = llm.chat([system, ChatMessage(role="user", content="One?")])
    assert emu.requests[-1].body["system"] == SYSTEM  # a string: the CachePoint is gone
    assert dropped.raw["usage"].cache_creation_input_tokens == 0  # type: ignore[index]

    def ask(question: str) -> Any:
        document = ChatMessage(role="user", blocks=[TextBlock(text=SYSTEM), point, TextBlock(text=question)])
        return llm.chat([ChatMessage(role="system", content="Be brief."), document]).raw["usage"]  # type: ignore[index]

    first, second = ask("One?"), ask("Two?")
    assert emu.requests[-1].body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert first.cache_creation_input_tokens > 1500
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
