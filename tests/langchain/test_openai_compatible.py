"""`ChatOpenAICompatible` on the emulator's OpenAI-compatible routes over loopback HTTP: invoke, stream (usage on
the wire and in the answer), tools, async, price labels, and the handler's totals against the emulator's counters.
Also `init_chat_model` routing and a wrapped `ChatOpenAI` priced under the label it is given."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from cache_integrations.errors import AuthenticationError, ConfigurationError, InvalidRequestError
from cache_integrations.langchain import (
    ChatOpenAICompatible,
    get_cache_usage_callback,
    init_chat_model,
    with_prompt_caching,
)
from cache_integrations.pricing import default_price_book
from cache_integrations.testing import Emulator, FakeClock, RunningServer
from cache_integrations.usage import Usage

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def emu() -> Emulator:
    return Emulator(clock=FakeClock())


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


ROUTES = {  # label -> (base URL attribute, model, the emulator's endpoint)
    "vllm": ("openai_base_url", "Qwen/Qwen3-8B", "openai"),
    "deepseek": ("deepseek_base_url", "deepseek-chat", "deepseek"),
    "dashscope": ("dashscope_base_url", "qwen-plus", "dashscope"),
}


def _llm(server: RunningServer, label: str, **kwargs: Any) -> ChatOpenAICompatible:
    attr, model, _ = ROUTES[label]
    return ChatOpenAICompatible(
        model=model, base_url=getattr(server, attr), provider=label, api_key="sk-test", max_retries=0, **kwargs
    )


def _chat(question: str) -> list[Any]:
    return [SystemMessage(LONG_SYSTEM_PROMPT), HumanMessage(question)]


def _sent(emu: Emulator, endpoint: str) -> list[Any]:
    return [r for r in emu.requests if r.endpoint == endpoint and r.path.endswith("/chat/completions")]


@pytest.mark.parametrize("label", list(ROUTES))
def test_invoke_and_stream_report_what_the_server_sent(emu: Emulator, server: RunningServer, label: str) -> None:
    llm = _llm(server, label)
    endpoint = ROUTES[label][2]
    with get_cache_usage_callback() as usage:
        first = llm.invoke(_chat("q1"))
        second = llm.invoke(_chat("q2"))
        chunks = list(llm.stream(_chat("q3")))
    sent = _sent(emu, endpoint)
    assert sent[2].body["stream"] is True and sent[2].body["stream_options"] == {"include_usage": True}
    assert "prompt_cache_key" not in sent[0].body  # an OpenAI-only field goes to no other server
    streamed = [c for c in chunks if c.usage_metadata]
    assert len(streamed) == 1 and streamed[0].response_metadata["model_provider"] == label
    replies = [first.usage_metadata, second.usage_metadata, streamed[0].usage_metadata]
    reported = [u["input_token_details"].get("cache_read", 0) for u in replies if u]
    assert reported[0] == 0 and reported[1] > 1000 and reported[2] > 1000
    assert sum(reported) == emu.counters.cached_tokens_by_endpoint[endpoint]
    assert [c.usage.cache_read_tokens for c in usage.calls if c.usage] == reported
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint[endpoint]
    assert usage.total.input_tokens == sum(r.usage["prompt_tokens"] for r in sent if r.usage)
    assert first.response_metadata["model_provider"] == label == llm.label


def test_prices_follow_the_label(server: RunningServer) -> None:
    with get_cache_usage_callback() as usage:
        _llm(server, "deepseek").invoke(_chat("q1"))
        _llm(server, "vllm").invoke(_chat("q1"))
    deepseek, vllm = usage.calls
    assert deepseek.provider == "deepseek" and deepseek.cost is not None
    expected = default_price_book().cost(deepseek.usage or Usage(), "deepseek-chat", ("deepseek",))
    assert expected is not None and deepseek.cost.total == expected.total > Decimal(0)
    assert vllm.provider == "vllm" and vllm.cost is None  # nobody prices a model on a vLLM server: n/a
    assert "n/a" in usage.report()


@tool
def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return f"Order {order_id}: shipped."


def test_tools_round_trip(emu: Emulator, server: RunningServer) -> None:
    llm = _llm(server, "vllm").bind_tools([lookup_order])
    history: list[Any] = _chat("Where is order 42?")
    call = llm.invoke(history)
    assert isinstance(call, AIMessage) and call.tool_calls and call.tool_calls[0]["name"] == "lookup_order"
    history += [
        call,
        ToolMessage(lookup_order.invoke(call.tool_calls[0]["args"]), tool_call_id=call.tool_calls[0]["id"]),
    ]
    answer = llm.invoke(history)
    assert "shipped" in str(answer.content)
    body = _sent(emu, "openai")[1].body
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["tools"][0]["function"]["name"] == "lookup_order"
    assert answer.usage_metadata is not None and answer.usage_metadata["input_token_details"]["cache_read"] > 1000


async def test_async_invoke_and_stream(emu: Emulator, server: RunningServer) -> None:
    llm = _llm(server, "deepseek")
    with get_cache_usage_callback() as usage:
        await llm.ainvoke(_chat("q1"))
        chunks = [c async for c in llm.astream(_chat("q2"))]
    final = [c for c in chunks if c.usage_metadata]
    assert len(final) == 1 and final[0].usage_metadata is not None
    assert final[0].usage_metadata["input_token_details"]["cache_read"] > 1000
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["deepseek"]


def test_reasoning_is_read_and_never_sent_back(emu: Emulator, server: RunningServer) -> None:
    llm = ChatOpenAICompatible(
        model="deepseek-reasoner", base_url=server.deepseek_base_url, provider="deepseek", api_key="k", max_retries=0
    )
    first = llm.invoke(_chat("Why is the sky blue?"))
    assert first.additional_kwargs.get("reasoning_content")
    llm.invoke([*_chat("Why is the sky blue?"), first, HumanMessage("And at sunset?")])
    assistant = _sent(emu, "deepseek")[1].body["messages"][2]
    assert assistant["role"] == "assistant" and "reasoning_content" not in assistant  # DeepSeek would answer 400


def test_errors_are_typed_and_name_the_label(server: RunningServer) -> None:
    emu = Emulator(api_keys={"right-key"})
    with emu.serve() as other:
        llm = ChatOpenAICompatible(
            model="deepseek-chat", base_url=other.deepseek_base_url, provider="deepseek", api_key="wrong-key"
        )
        with pytest.raises(AuthenticationError) as caught:
            llm.invoke("hi")
    assert caught.value.status_code == 401 and caught.value.provider == "deepseek"
    assert caught.value.code == "invalid_api_key" and "wrong-key" not in str(caught.value)


def test_a_local_server_goes_without_a_key(emu: Emulator, server: RunningServer, monkeypatch: Any) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    llm = ChatOpenAICompatible(model="m", base_url=server.openai_base_url, provider="vllm", max_retries=0)
    with pytest.raises(AuthenticationError):  # the emulator's OpenAI route insists on a key; a vLLM need not
        llm.invoke("hi")
    assert "authorization" not in emu.requests[-1].headers


def test_configuration_errors_name_the_field(server: RunningServer, monkeypatch: Any) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DEEPSEEK_API_KEY"):
        ChatOpenAICompatible(model="deepseek-chat", base_url="https://api.deepseek.com")
    with pytest.raises(ConfigurationError, match=r"provider: 'vlm' is not one of \['openai', 'deepseek'"):
        ChatOpenAICompatible(model="m", base_url=server.openai_base_url, provider="vlm")
    with pytest.raises(ConfigurationError, match="base_url"):
        ChatOpenAICompatible(model="m", base_url="")
    with pytest.raises(ConfigurationError, match="temperature"):
        ChatOpenAICompatible(model="m", base_url=server.openai_base_url, provider="vllm", temperature=2.5)
    llm = ChatOpenAICompatible(model="m", base_url=server.openai_base_url, provider="vllm")
    with pytest.raises(InvalidRequestError, match="temperature"):
        llm.invoke("hi", temperature=3)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "from-env")
    assert ChatOpenAICompatible(model="deepseek-chat", base_url="https://api.deepseek.com").label == "deepseek"


@pytest.mark.parametrize(
    ("base_url", "label"),
    [
        ("https://api.deepseek.com", "deepseek"),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "dashscope"),
        ("https://api.openai.com/v1", "openai"),
        ("http://localhost:8000/v1", "openai_compatible"),
    ],
)
def test_the_label_is_inferred_from_the_host(base_url: str, label: str) -> None:
    assert ChatOpenAICompatible(model="m", base_url=base_url, api_key="k").label == label


def test_init_chat_model_routes_servers_without_a_langchain_class(server: RunningServer) -> None:
    specs = (("vllm:Qwen/Qwen3-8B", "vllm"), ("llamacpp:gpt-oss:20b", "llamacpp"), ("llama.cpp:m", "llamacpp"))
    for spec, label in (*specs, ("llama-cpp:m", "llamacpp"), ("sglang:m", "sglang")):
        llm = init_chat_model(spec, base_url=server.openai_base_url, api_key="k")
        assert isinstance(llm, ChatOpenAICompatible) and llm.label == label
    assert init_chat_model("llamacpp:gpt-oss:20b", base_url=server.openai_base_url).model == "gpt-oss:20b"
    qwen = init_chat_model("dashscope:qwen-plus", base_url=server.dashscope_base_url, api_key="k")
    assert isinstance(qwen, ChatOpenAICompatible) and qwen.label == "dashscope"
    generic = init_chat_model("m", model_provider="openai_compatible", base_url=server.openai_base_url)
    assert isinstance(generic, ChatOpenAICompatible) and generic.label == "openai_compatible"
    with pytest.raises(ConfigurationError, match="base_url"):
        init_chat_model("vllm:Qwen/Qwen3-8B")


def test_a_wrapped_chatopenai_is_priced_under_its_label(server: RunningServer) -> None:
    """ChatOpenAI reports model_provider "openai" whatever its base URL: the label decides the price."""
    deepseek = ChatOpenAI(model="deepseek-chat", api_key="k", base_url=server.deepseek_base_url, max_retries=0)
    local = ChatOpenAI(model="gpt-4o-mini", api_key="k", base_url=server.openai_base_url, max_retries=0)
    with get_cache_usage_callback() as usage:
        with_prompt_caching(deepseek, provider="deepseek").invoke(_chat("q1"))
        with_prompt_caching(local, provider="vllm").invoke(_chat("q1"))
        local.invoke(_chat("q2"))  # unwrapped: priced as the model says (openai)
    wrapped_deepseek, wrapped_local, plain = usage.calls
    assert wrapped_deepseek.provider == "deepseek" and wrapped_deepseek.cost is not None
    assert wrapped_local.provider == "vllm" and wrapped_local.cost is None  # never OpenAI's price for a local model
    assert plain.provider == "openai" and plain.cost is not None
    with pytest.raises(ConfigurationError, match="provider: 'vlm'"):
        with_prompt_caching(local, provider="vlm")


def test_the_middleware_prices_a_relabelled_chatopenai_under_its_label(emu: Emulator, server: RunningServer) -> None:
    from langchain.agents import create_agent

    from cache_integrations.langchain import PromptCachingMiddleware

    model = ChatOpenAI(model="deepseek-chat", api_key="k", base_url=server.deepseek_base_url, max_retries=0)
    agent = create_agent(model, [lookup_order], middleware=[PromptCachingMiddleware(provider="deepseek")])
    with get_cache_usage_callback() as usage:
        agent.invoke({"messages": [SystemMessage(LONG_SYSTEM_PROMPT), HumanMessage("Where is order 42?")]})
    assert len(usage.calls) == 2 and all(c.provider == "deepseek" and c.cost is not None for c in usage.calls)
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_by_endpoint["deepseek"] > 1000
    assert all("prompt_cache_key" not in r.body for r in _sent(emu, "deepseek"))


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp"])
def test_local_servers_usage_over_http(dialect: str) -> None:
    """vLLM's usage without details on a miss, llama.cpp's timings.cache_n: read on invoke and on the stream."""
    from cache_integrations.testing import LLAMACPP_RULES, VLLM_RULES

    emu = Emulator(clock=FakeClock(), openai_rules=VLLM_RULES if dialect == "vllm" else LLAMACPP_RULES)
    emu.openai_dialect = dialect  # type: ignore[assignment]
    with emu.serve() as local:
        llm = ChatOpenAICompatible(model="m", base_url=local.openai_base_url, provider=dialect, api_key="k")
        with get_cache_usage_callback() as usage:
            cold = llm.invoke(_chat("q1"))
            warm = llm.invoke(_chat("q2"))
            streamed = [c for c in llm.stream(_chat("q3")) if c.usage_metadata]
    first, second, third = (r.usage for r in emu.requests)
    assert first is not None and second is not None and third is not None
    if dialect == "vllm":
        assert first["prompt_tokens_details"] is None and second["prompt_tokens_details"]["cached_tokens"] > 1000
    else:
        assert set(second) == {"completion_tokens", "prompt_tokens", "total_tokens"}  # the cache only in timings
        assert emu.requests[2].body["stream_options"] == {"include_usage": True}
    assert cold.usage_metadata is not None and warm.usage_metadata is not None and streamed[0].usage_metadata
    reads = [m["input_token_details"].get("cache_read", 0) for m in (cold.usage_metadata, warm.usage_metadata)]
    reads.append(streamed[0].usage_metadata["input_token_details"].get("cache_read", 0))
    assert reads[0] == 0 and reads[1] > 1000 and reads[2] > 1000
    assert [c.usage.cache_read_tokens for c in usage.calls if c.usage] == reads
    assert sum(reads) == emu.counters.cached_tokens_by_endpoint["openai"] == usage.total.cache_read_tokens
    assert all(c.provider == dialect and c.cost is None for c in usage.calls)


def test_chatopenai_drops_llamacpp_timings_so_the_wrapper_reads_no_cache() -> None:
    """Why our own class exists for llama.cpp: ChatOpenAI keeps usage only, where llama.cpp reports no cache."""
    from cache_integrations.testing import LLAMACPP_RULES

    emu = Emulator(clock=FakeClock(), openai_rules=LLAMACPP_RULES)
    emu.openai_dialect = "llamacpp"
    with emu.serve() as local:
        model = ChatOpenAI(model="m", api_key="k", base_url=local.openai_base_url, max_retries=0)
        llm = with_prompt_caching(model, provider="llamacpp")
        with get_cache_usage_callback() as usage:
            llm.invoke(_chat("q1"))
            llm.invoke(_chat("q2"))
    assert emu.counters.cached_tokens_by_endpoint["openai"] > 1000
    assert usage.total.cache_read_tokens == 0
