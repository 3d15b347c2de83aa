"""Usage that is missing, negative or not a number is unknown: ``usage=None`` on the response and
the final chunk, one warning per provider per process, and the handlers count the call without
booking any tokens (never zeros, never negative numbers)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage
from pydantic import SecretStr

from cache_integrations.accounting import CacheLedger
from cache_integrations.langchain import ChatGemini, ChatGLM, get_cache_usage_callback
from cache_integrations.llama_index import GLM, CacheUsageHandler
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers import GeminiProvider, GLMProvider, _http
from cache_integrations.usage import Usage, usage_from_openai

KEY = "unknown-usage-key-0123456789"
GOOD_USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}}
BAD_USAGES: list[Any] = [
    None,
    {},
    {"completion_tokens": 3},
    {"prompt_tokens": -12, "completion_tokens": 3},
    {"prompt_tokens": "12", "completion_tokens": 3},
    {"prompt_tokens": 12, "completion_tokens": "many"},
    {"prompt_tokens": 12.5, "completion_tokens": 3},
    {"prompt_tokens": True, "completion_tokens": 3},
    {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": -1}},
    {"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": "none"},
    "lots",
]


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "_warned_usage", {})


def _glm_body(usage: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "r1",
        "model": "glm-4.7",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _glm_stream(usage: Any) -> bytes:
    final: dict[str, Any] = {
        "id": "r1",
        "model": "glm-4.7",
        "choices": [{"index": 0, "finish_reason": "stop", "delta": {"content": "hi"}}],
    }
    if usage is not None:
        final["usage"] = usage
    return f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode()


def _transport(usage: Any) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, content=_glm_stream(usage), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=_glm_body(usage))

    return httpx.MockTransport(answer)


def _glm_provider(usage: Any) -> GLMProvider:
    transport = _transport(usage)
    return GLMProvider(
        api_key=SecretStr(KEY),
        base_url="http://glm.test/v4",
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )


ASK = ChatRequest("glm-4.7", (Message("user", "hello"),))


@pytest.mark.parametrize("usage", BAD_USAGES)
def test_missing_negative_or_non_numeric_usage_is_unknown(usage: Any) -> None:
    assert usage_from_openai(usage) is None
    provider = _glm_provider(usage)
    assert provider.chat(ASK).usage is None
    final = list(provider.stream(ASK))[-1]
    assert final.final and final.usage is None


def test_valid_usage_is_still_read() -> None:
    provider = _glm_provider(GOOD_USAGE)
    expected = Usage(input_tokens=12, cache_read_tokens=8, output_tokens=3)
    assert provider.chat(ASK).usage == expected
    assert list(provider.stream(ASK))[-1].usage == expected


async def test_unknown_usage_warns_once_per_provider_per_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations")
    provider = _glm_provider(None)
    provider.chat(ASK)
    await provider.achat(ASK)
    list(provider.stream(ASK))
    _glm_provider({"prompt_tokens": -1}).chat(ASK)  # another client of the same provider: still once
    warnings = [r for r in caplog.records if "usage unknown" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "zhipuai" in warnings[0].getMessage()

    def gemini(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"candidates": [{"content": {"parts": [{"text": "x"}]}}]})

    client = httpx.Client(transport=httpx.MockTransport(gemini))
    gem = GeminiProvider(api_key=SecretStr(KEY), base_url="http://g.test/v1beta", http_client=client)
    assert gem.chat(ChatRequest("gemini-2.5-flash", (Message("user", "hi"),))).usage is None
    assert len([r for r in caplog.records if "usage unknown" in r.getMessage()]) == 2  # one for google


def test_the_ledger_counts_a_call_with_unknown_usage_without_booking_tokens() -> None:
    ledger = CacheLedger()
    ledger.record(Usage(input_tokens=100, cache_read_tokens=80, output_tokens=5), model="glm-4.7", provider="zhipuai")
    record = ledger.record(None, model="glm-4.7", provider="zhipuai")
    assert record.usage is None and record.cost is None
    stats = ledger.by_model["glm-4.7"]
    assert stats.calls == 2 and stats.unknown_usage_calls == 1 and stats.unpriced_calls == 0
    assert (stats.input_tokens, stats.cache_read_tokens, stats.output_tokens) == (100, 80, 5)
    assert ledger.total.unknown_usage_calls == 1
    assert "1 call(s) reported no usage" in ledger.report()


def _chat_glm(usage: Any) -> ChatGLM:
    transport = _transport(usage)
    return ChatGLM(
        api_key=KEY,
        base_url="http://glm.test/v4",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
    )


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_langchain_messages_carry_no_usage_and_the_handler_counts_the_call_as_unknown(mode: str) -> None:
    llm = _chat_glm({"prompt_tokens": -5, "completion_tokens": 1})
    with get_cache_usage_callback() as handler:
        if mode == "invoke":
            message: Any = llm.invoke("hello")
        else:
            message = None
            for chunk in llm.stream("hello"):
                message = chunk if message is None else message + chunk
    assert message.usage_metadata is None
    assert message.response_metadata["usage_unknown"] is True
    stats = handler.total
    assert stats.calls == 1 and stats.unknown_usage_calls == 1
    assert stats.input_tokens == stats.output_tokens == stats.cache_read_tokens == 0
    assert handler.calls[0].usage is None and handler.diagnoses == []
    assert "reported no usage" in handler.report()


def test_langchain_known_usage_is_unchanged() -> None:
    with get_cache_usage_callback() as handler:
        message = _chat_glm(GOOD_USAGE).invoke("hello")
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] == 12
    assert "usage_unknown" not in message.response_metadata
    assert handler.total.unknown_usage_calls == 0 and handler.total.input_tokens == 12


def test_chat_gemini_without_usage_reports_none() -> None:
    def gemini(request: httpx.Request) -> httpx.Response:
        body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}
        return httpx.Response(200, json=body)

    llm = ChatGemini(
        api_key=KEY,
        base_url="http://g.test/v1beta",
        cache_mode="off",
        cache_registry="memory",
        http_client=httpx.Client(transport=httpx.MockTransport(gemini)),
    )
    assert llm.invoke("hello").usage_metadata is None


@pytest.mark.parametrize("call", ["chat", "stream_chat"])
def test_llama_index_responses_carry_no_usage_and_the_handler_counts_the_call(call: str) -> None:
    transport = _transport(None)
    llm = GLM(api_key=KEY, base_url="http://glm.test/v4", http_client=httpx.Client(transport=transport))
    handler = CacheUsageHandler()
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    try:
        run: Callable[..., Any] = getattr(llm, call)
        result = run([ChatMessage(role="user", content="hello")])
        if call == "stream_chat":
            *_, result = list(result)
    finally:
        dispatcher.event_handlers.remove(handler)
    assert result.raw["usage"] is None and result.raw["usage_unknown"] is True
    assert "prompt_tokens" not in result.additional_kwargs
    assert handler.total.calls == 1 and handler.total.unknown_usage_calls == 1
    assert handler.total.input_tokens == 0 and handler.calls[0].usage is None
