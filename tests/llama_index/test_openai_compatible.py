"""LlamaIndex `OpenAICompatible` on the emulator's OpenAI-compatible routes over loopback HTTP: chat, stream, async,
tools, an agent, price labels, and the handler's totals against the emulator's counters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool

from cache_integrations import ConfigurationError
from cache_integrations.llama_index import CacheUsageHandler, OpenAICompatible
from cache_integrations.testing import Emulator, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _llm(server: RunningServer, label: str = "vllm", **kwargs: Any) -> OpenAICompatible:
    base = {"vllm": server.openai_base_url, "deepseek": server.deepseek_base_url}[label]
    model = {"vllm": "Qwen/Qwen3-8B", "deepseek": "deepseek-chat"}[label]
    return OpenAICompatible(model=model, base_url=base, provider=label, api_key="sk-test", max_retries=0, **kwargs)


def _chat(question: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=LONG_SYSTEM_PROMPT), ChatMessage(role="user", content=question)]


def _cached(response: Any) -> int:
    return int(response.raw["usage"]["prompt_tokens_details"]["cached_tokens"])


def test_chat_stream_and_async_report_what_the_server_sent(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    import asyncio

    llm = _llm(server, "deepseek")
    first = llm.chat(_chat("q1"))
    second = llm.chat(_chat("q2"))
    *_, last = llm.stream_chat(_chat("q3"))
    third = asyncio.run(llm.achat(_chat("q4")))
    reads = [_cached(r) for r in (first, second, last, third)]
    assert reads[0] == 0 and all(r > 1000 for r in reads[1:])
    assert sum(reads) == emu.counters.cached_tokens_by_endpoint["deepseek"] == usage.total.cache_read_tokens
    sent = [r for r in emu.requests if r.endpoint == "deepseek"]
    assert sent[2].body["stream_options"] == {"include_usage": True}
    assert first.raw["provider"] == "deepseek" and usage.total.cost is not None  # genai-prices prices DeepSeek
    assert all(c.provider == "deepseek" for c in usage.calls)


def test_a_model_nobody_prices_shows_na(server: RunningServer, usage: CacheUsageHandler) -> None:
    llm = _llm(server, "vllm")
    llm.chat(_chat("q1"))
    [call] = usage.calls
    assert call.provider == "vllm" and call.cost is None and "n/a" in usage.report()
    assert llm.metadata.is_chat_model and llm.metadata.is_function_calling_model  # any model name is a chat model


def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return f"Order {order_id}: shipped."


def test_tools_and_an_agent(emu: Emulator, server: RunningServer, usage: CacheUsageHandler) -> None:
    import asyncio

    llm = _llm(server, "vllm", context_window=32768)
    tool = FunctionTool.from_defaults(lookup_order)
    reply = llm.chat_with_tools([tool], user_msg="Where is order 42?", chat_history=_chat("")[:1])
    calls = llm.get_tool_calls_from_response(reply, error_on_no_tool_call=True)
    assert calls[0].tool_name == "lookup_order"
    agent = FunctionAgent(tools=[tool], llm=llm, system_prompt=LONG_SYSTEM_PROMPT)

    async def run() -> Any:
        return await agent.run(user_msg="Where is order 43?")

    answer = asyncio.run(run())
    assert "shipped" in str(answer)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["openai"] > 1000


def test_configuration_errors(server: RunningServer, monkeypatch: Any) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DEEPSEEK_API_KEY"):
        OpenAICompatible(model="deepseek-chat", base_url="https://api.deepseek.com")
    with pytest.raises(ConfigurationError, match="base_url"):
        OpenAICompatible(model="m")
    with pytest.raises(ConfigurationError, match="provider: 'vlm'"):
        OpenAICompatible(model="m", base_url=server.openai_base_url, provider="vlm")
    with pytest.raises(ConfigurationError, match="did you mean 'base_url'"):
        OpenAICompatible(model="m", base_ur=server.openai_base_url)


def test_server_diagnostics_is_refused_in_llamaindex(server: RunningServer) -> None:
    from cache_integrations.llama_index import with_prompt_caching

    with pytest.raises(ConfigurationError, match="server_diagnostics: asked through LangChain"):
        with_prompt_caching(_llm(server), server_diagnostics=True)
