"""The handlers read every provider's usage, as each real LlamaIndex package reports it.

OpenAI and Gemini run the real packages against the emulator over loopback HTTP. DeepSeek, DashScope (Qwen) and
Anthropic run the real packages' response handling on their SDKs' own response types, built from hand-written
bodies in each provider's documented shape (the emulator speaks none of them): the SDK call is replaced, every
line of the LlamaIndex package that turns the SDK response into a `ChatResponse` runs as shipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic.types as at
import pytest
from google.genai import types as gt
from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.llms.anthropic import Anthropic
from llama_index.llms.google_genai import GoogleGenAI
from llama_index.llms.google_genai.utils import chat_from_gemini_response
from llama_index.llms.openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cache_integrations import Usage
from cache_integrations.llama_index import (
    CachedTokenCountingHandler,
    CacheUsageHandler,
    usage_from_llama_index,
    with_prompt_caching,
)
from cache_integrations.testing import Emulator, RunningServer

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

SYSTEM = ChatMessage(role="system", content=LONG_SYSTEM_PROMPT)


def _user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


# -- OpenAI-compatible bodies through llama-index-llms-openai's own response handling ----------------------


def _completion(usage: dict[str, Any], model: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_760_000_000,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"},
            ],
            "usage": usage,
        }
    )


def _chunks(usage: dict[str, Any], model: str) -> list[ChatCompletionChunk]:
    head = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1_760_000_000, "model": model}
    return [
        ChatCompletionChunk.model_validate(
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "o"}, "finish_reason": None}]}
        ),
        ChatCompletionChunk.model_validate(
            {**head, "choices": [{"index": 0, "delta": {"content": "k"}, "finish_reason": "stop"}]}
        ),
        ChatCompletionChunk.model_validate({**head, "choices": [], "usage": usage}),  # include_usage's last chunk
    ]


def _openai_class_answering(
    monkeypatch: pytest.MonkeyPatch, llm: OpenAI, completion: ChatCompletion, chunks: list[ChatCompletionChunk]
) -> None:
    def create(**kwargs: Any) -> Any:
        return iter(chunks) if kwargs.get("stream") else completion

    monkeypatch.setattr(llm._get_client().chat.completions, "create", create)


# DeepSeek (api-docs.deepseek.com/guides/kv_cache): prompt_cache_hit_tokens + prompt_cache_miss_tokens = prompt_tokens
DEEPSEEK = {
    "prompt_tokens": 1300,
    "completion_tokens": 40,
    "total_tokens": 1340,
    "prompt_tokens_details": {"cached_tokens": 1280},
    "completion_tokens_details": {"reasoning_tokens": 25},
    "prompt_cache_hit_tokens": 1280,
    "prompt_cache_miss_tokens": 20,
}
# DashScope explicit cache, OpenAI-compatible mode (alibabacloud.com/help/en/model-studio/context-cache): a write
DASHSCOPE_WRITE = {
    "prompt_tokens": 1600,
    "completion_tokens": 12,
    "total_tokens": 1612,
    "prompt_tokens_details": {
        "cached_tokens": 0,
        "cache_creation_input_tokens": 1536,
        "cache_creation": {"ephemeral_5m_input_tokens": 1536},
        "cache_type": "ephemeral",
    },
}
DASHSCOPE_READ = {
    "prompt_tokens": 1610,
    "completion_tokens": 9,
    "total_tokens": 1619,
    "prompt_tokens_details": {"cached_tokens": 1536, "cache_creation_input_tokens": 0, "cache_type": "ephemeral"},
}


DASHSCOPE_URL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"


@pytest.mark.parametrize(
    ("base_url", "model", "body", "expected"),
    [
        ("https://api.deepseek.com", "deepseek-chat", DEEPSEEK, Usage(1300, 1280, 0, 40, 25)),
        (DASHSCOPE_URL, "qwen-plus", DASHSCOPE_WRITE, Usage(1600, 0, 1536, 12)),
        (DASHSCOPE_URL, "qwen-plus", DASHSCOPE_READ, Usage(1610, 1536, 0, 9)),
    ],
    ids=["deepseek", "dashscope-write", "dashscope-read"],
)
def test_openai_compatible_providers_through_llama_index_openai(
    monkeypatch: pytest.MonkeyPatch,
    usage: CacheUsageHandler,
    base_url: str,
    model: str,
    body: dict[str, Any],
    expected: Usage,
) -> None:
    llm = OpenAI(model="gpt-4o-mini", api_key="test-key", api_base=base_url)
    _openai_class_answering(monkeypatch, llm, _completion(body, model), _chunks(body, model))
    wrapped = with_prompt_caching(llm)
    reply = wrapped.chat([SYSTEM, _user("q")])
    last = list(wrapped.stream_chat([SYSTEM, _user("q")]))[-1]
    assert usage_from_llama_index(reply) == expected
    assert usage_from_llama_index(last) == expected
    assert usage.total.calls == 2
    assert usage.total.cache_read_tokens == 2 * expected.cache_read_tokens
    assert usage.total.cache_write_tokens == 2 * expected.cache_write_tokens


# -- Anthropic: input_tokens excludes cache reads and writes -------------------------------------------------


def _anthropic_message(usage: dict[str, Any]) -> at.Message:
    return at.Message.model_validate(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def _anthropic_stream(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> list[Any]:
    message = _anthropic_message(start_usage).model_dump()
    message.update(content=[], stop_reason=None)
    return [
        at.RawMessageStartEvent.model_validate({"type": "message_start", "message": message}),
        at.RawContentBlockStartEvent.model_validate(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        ),
        at.RawContentBlockDeltaEvent.model_validate(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}
        ),
        at.RawContentBlockStopEvent.model_validate({"type": "content_block_stop", "index": 0}),
        at.RawMessageDeltaEvent.model_validate(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage}
        ),
        at.RawMessageStopEvent.model_validate({"type": "message_stop"}),
    ]


@pytest.fixture
def anthropic_llm(monkeypatch: pytest.MonkeyPatch) -> Anthropic:
    # llama-index-llms-anthropic 0.12.3 cannot build requests with anthropic SDK 2.x ("Cannot instantiate
    # typing.Union" in messages_to_anthropic_messages); the request side is not under test here.
    import llama_index.llms.anthropic.base as anthropic_base

    monkeypatch.setattr(anthropic_base, "messages_to_anthropic_messages", lambda *args, **kwargs: ([], ""))
    return Anthropic(model="claude-sonnet-4-5", api_key="test-key")


def test_anthropic_usage_is_made_inclusive(
    monkeypatch: pytest.MonkeyPatch, anthropic_llm: Anthropic, usage: CacheUsageHandler
) -> None:
    write = {"input_tokens": 12, "cache_creation_input_tokens": 2100, "cache_read_input_tokens": 0, "output_tokens": 30}
    read = {"input_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2100, "output_tokens": 9}
    answers = iter(
        [
            _anthropic_message(write),
            _anthropic_stream({**read, "output_tokens": 1}, read),  # message_delta usage is cumulative
        ]
    )
    monkeypatch.setattr(anthropic_llm._client.messages, "create", lambda **kwargs: next(answers))
    reply = anthropic_llm.chat([SYSTEM, _user("q")])
    last = list(anthropic_llm.stream_chat([SYSTEM, _user("q")]))[-1]
    assert usage_from_llama_index(reply) == Usage(2112, 0, 2100, 30)
    assert usage_from_llama_index(last) == Usage(2115, 2100, 0, 9)
    assert (usage.total.input_tokens, usage.total.cache_read_tokens, usage.total.cache_write_tokens) == (
        4227,
        2100,
        2100,
    )
    assert {c.provider for c in usage.calls} == {"anthropic"}


# -- Gemini: google-genai objects, not only dicts --------------------------------------------------------------

GEMINI_BODY = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {
        "promptTokenCount": 3000,
        "cachedContentTokenCount": 2048,
        "candidatesTokenCount": 40,
        "thoughtsTokenCount": 60,
        "toolUsePromptTokenCount": 12,
        "totalTokenCount": 3112,
    },
    "modelVersion": "gemini-2.5-flash",
}
GEMINI_USAGE = Usage(input_tokens=3012, cache_read_tokens=2048, output_tokens=100, reasoning_tokens=60)


def test_gemini_usage_metadata_as_dicts_and_as_sdk_objects() -> None:
    response = gt.GenerateContentResponse.model_validate(GEMINI_BODY)
    as_llama_index_reports_it = chat_from_gemini_response(response, [])  # raw["usage_metadata"]: a dict
    assert usage_from_llama_index(as_llama_index_reports_it) == GEMINI_USAGE
    message = ChatMessage(role="assistant", content="ok")
    assert usage_from_llama_index(ChatResponse(message=message, raw=response)) == GEMINI_USAGE
    raw_with_object = {"usage_metadata": response.usage_metadata}
    assert usage_from_llama_index(ChatResponse(message=message, raw=raw_with_object)) == GEMINI_USAGE


def test_google_genai_on_the_emulator_reports_the_servers_cached_tokens(
    emu: Emulator, server: RunningServer, usage: CacheUsageHandler
) -> None:
    llm = GoogleGenAI(
        model="gemini-2.5-flash",
        api_key="test-key",
        max_tokens=256,
        context_window=1_048_576,  # with both set, the package asks the API for no model metadata
        http_options={"base_url": server.gemini_base_url.removesuffix("/v1beta"), "api_version": "v1beta"},
    )
    wrapped = with_prompt_caching(llm)
    long_system = ChatMessage(role="system", content=LONG_SYSTEM_PROMPT * 2)
    wrapped.chat([_user("first"), long_system])
    wrapped.chat([long_system, _user("second")])
    chunks = list(wrapped.stream_chat([long_system, _user("third")]))
    assert chunks[-1].raw["usage_metadata"]["cached_content_token_count"] > 0
    generate = [r.body for r in emu.requests if r.endpoint == "gemini"]
    assert all("systemInstruction" in b and len(b["contents"]) == 1 for b in generate)  # system hoisted
    assert usage.total.calls == 3
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens > 0
    assert usage.total.input_tokens == emu.counters.prompt_tokens


def test_the_token_counting_handler_counts_anthropics_cached_prompt_tokens(
    monkeypatch: pytest.MonkeyPatch, anthropic_llm: Anthropic
) -> None:
    # TokenCountingHandler takes Anthropic's input_tokens (cache reads and writes excluded) as the prompt
    # (llama_index #22548); the drop-in counts what was billed
    read = {"input_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2100, "output_tokens": 9}
    monkeypatch.setattr(anthropic_llm._client.messages, "create", lambda **kwargs: _anthropic_message(read))
    counter = CachedTokenCountingHandler()
    anthropic_llm.callback_manager = CallbackManager([counter])
    anthropic_llm.chat([SYSTEM, _user("q")])
    assert (counter.prompt_llm_token_count, counter.completion_llm_token_count) == (2115, 9)
    assert counter.total_llm_token_count == 2124
    assert counter.cached_llm_token_count == 2100
