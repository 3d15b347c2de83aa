"""The usage handlers: every LlamaIndex usage shape, model attribution, thread safety, drop-in counting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent, LLMCompletionEndEvent

from cache_integrations import Usage
from cache_integrations.llama_index import (
    CachedTokenCountingHandler,
    CacheUsageHandler,
    get_cache_usage_handler,
    usage_from_llama_index,
)
from cache_integrations.testing import Emulator

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import make_glm


class _OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]


class _OpenAICompletion(BaseModel):
    model: str
    usage: _OpenAIUsage


def _reply(raw: Any = None, **additional: Any) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role="assistant", content="ok"), raw=raw, additional_kwargs=additional)


OPENAI = {
    "prompt_tokens": 2000,
    "completion_tokens": 10,
    "total_tokens": 2010,
    "prompt_tokens_details": {"cached_tokens": 1536},
}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # OpenAI chat completions: the SDK object, or a dict
        (
            _reply(_OpenAICompletion(model="gpt-4o-mini", usage=_OpenAIUsage(**OPENAI))),
            Usage(input_tokens=2000, cache_read_tokens=1536, output_tokens=10),
        ),
        (_reply({"usage": OPENAI}), Usage(input_tokens=2000, cache_read_tokens=1536, output_tokens=10)),
        # Anthropic: input_tokens excludes cache reads and writes
        (
            _reply(
                {
                    "usage": {
                        "input_tokens": 3,
                        "cache_read_input_tokens": 20000,
                        "cache_creation_input_tokens": 100,
                        "output_tokens": 120,
                    }
                }
            ),
            Usage(input_tokens=20103, cache_read_tokens=20000, cache_write_tokens=100, output_tokens=120),
        ),
        # Bedrock-style counts in additional_kwargs only
        (
            _reply(None, prompt_tokens=500, completion_tokens=5, cache_read_input_tokens=400),
            Usage(input_tokens=500, cache_read_tokens=400, output_tokens=5),
        ),
        # google-genai's usage_metadata (thoughts are output)
        (
            _reply(
                {
                    "usage_metadata": {
                        "prompt_token_count": 3000,
                        "cached_content_token_count": 2048,
                        "candidates_token_count": 40,
                        "thoughts_token_count": 60,
                    }
                }
            ),
            Usage(input_tokens=3000, cache_read_tokens=2048, output_tokens=100, reasoning_tokens=60),
        ),
        # OpenAI Responses API: input includes cached tokens
        (
            _reply(
                {"usage": {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 512}, "output_tokens": 7}}
            ),
            Usage(input_tokens=900, cache_read_tokens=512, output_tokens=7),
        ),
        (_reply(SimpleNamespace(id="x")), None),
        (_reply(None), None),
    ],
)
def test_usage_shapes_of_other_llms(response: ChatResponse, expected: Usage | None) -> None:
    assert usage_from_llama_index(response) == expected


def test_explicit_cache_storage_is_booked_from_raw() -> None:
    raw = {
        "usage": {
            "prompt_tokens": 6000,
            "completion_tokens": 5,
            "total_tokens": 6005,
            "prompt_tokens_details": {"cached_tokens": 4000},
            "cache_read_input_tokens": 4000,
            "cache_creation_input_tokens": 4000,
        },
        "model": "gemini-2.5-flash",
        "provider": "google",
        "cache": {"name": "cachedContents/x", "storage_token_hours": 4000.0, "written_tokens": 4000},
    }
    usage = usage_from_llama_index(_reply(raw))
    assert usage == Usage(6000, 4000, 4000, 5, cache_storage_token_hours=4000.0, baseline_input_tokens=2000)


def test_event_handler_attributes_models_and_ignores_other_events() -> None:
    handler = CacheUsageHandler()
    start = LLMChatStartEvent(
        messages=[],
        additional_kwargs={},
        model_dict={"model_name": "claude-sonnet-4-5", "class_name": "Anthropic_LLM"},
        span_id="s1",
    )
    handler.handle(start)
    anthropic = {"usage": {"input_tokens": 10, "cache_read_input_tokens": 1000, "output_tokens": 5}}
    handler.handle(LLMChatEndEvent(messages=[], response=_reply(anthropic), span_id="s1"))
    handler.handle(LLMChatEndEvent(messages=[], response=None, span_id="s2"))
    handler.handle(
        LLMCompletionEndEvent(
            prompt="p", response=CompletionResponse(text="t", raw={"usage": OPENAI, "model": "gpt-4o-mini"})
        )
    )
    handler.handle(LLMChatEndEvent(messages=[], response=_reply({"id": "no usage"})))
    assert set(handler.by_model) == {"claude-sonnet-4-5", "gpt-4o-mini"}
    claude = handler.by_model["claude-sonnet-4-5"]
    assert claude.calls == 1 and claude.input_tokens == 1010 and claude.cache_read_tokens == 1000
    assert handler.calls[0].provider == "anthropic"
    assert handler.total.calls == 2 and "claude-sonnet-4-5" in handler.report()
    handler.reset()
    assert handler.total.calls == 0


def test_get_cache_usage_handler_installs_and_removes() -> None:
    dispatcher = get_dispatcher()
    before = list(dispatcher.event_handlers)
    with get_cache_usage_handler() as handler:
        assert handler in dispatcher.event_handlers
    assert dispatcher.event_handlers == before


def test_handlers_are_thread_safe(emu: Emulator, usage: CacheUsageHandler) -> None:
    counter = CachedTokenCountingHandler()
    llm = make_glm(emu, callback_manager=CallbackManager([counter]))
    prompts = [
        [ChatMessage(role="system", content=LONG_SYSTEM_PROMPT), ChatMessage(role="user", content=f"q{i}")]
        for i in range(16)
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(llm.chat, prompts))
    assert usage.total.calls == len(counter.llm_token_counts) == 16
    assert usage.total.input_tokens == counter.prompt_llm_token_count == emu.counters.prompt_tokens
    assert usage.total.cache_read_tokens == counter.cached_llm_token_count == emu.counters.cached_tokens_implicit


def test_counting_handler_stays_a_token_counting_handler() -> None:
    counter = CachedTokenCountingHandler(token_budget=None)
    payload = {
        EventPayload.MESSAGES: [ChatMessage(role="user", content="hi")],
        EventPayload.RESPONSE: _reply({"usage": OPENAI, "model": "gpt-4o-mini"}),
    }
    event_id = counter.on_event_start(
        CBEventType.LLM, {EventPayload.SERIALIZED: {"model_name": "gpt-4o-mini"}}, event_id="e1"
    )
    counter.on_event_end(CBEventType.LLM, payload, event_id=event_id)
    assert counter.prompt_llm_token_count == 2000 and counter.completion_llm_token_count == 10
    assert counter.cached_llm_token_count == 1536 and counter.cache_write_llm_token_count == 0
    assert counter.cache_hit_rate == pytest.approx(0.768)
    assert counter.by_model["gpt-4o-mini"].calls == 1
    counter.reset_counts()
    assert counter.llm_token_counts == [] and counter.cached_llm_token_count == 0
