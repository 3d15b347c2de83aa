"""langchain-tests' standard suites for ChatGemini: unit, and integration replayed from cassettes.

The cassettes are emulator recordings in Gemini's wire format (usageMetadata inclusive of
cachedContentTokenCount, cachedContents resources), not captures of the real API
(tests/cassettes/README.md). Re-record against the real API with
`GEMINI_API_KEY=... python -m tests.record_cassettes --real`. Reported usage is compared with the
recorded responses (`cassette` fixture), not with the library's own numbers.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from cache_integrations.langchain import ChatGemini

from ..wire import Cassette, assert_gemini_reported, gemini_cached
from .long_prompt import LONG_SYSTEM_PROMPT

PARAMS: dict[str, Any] = {
    "model": "gemini-2.5-flash",
    "api_key": os.environ.get("GEMINI_API_KEY", "cassette-replay"),
    "cache_registry": "memory",
}


def _run(llm: ChatGemini, input_: Any, stream: bool) -> AIMessage:
    if not stream:
        return llm.invoke(input_)
    full: BaseMessageChunk | None = None
    for chunk in llm.stream(input_):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


class TestChatGeminiUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatGemini]:
        return ChatGemini

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gemini-2.5-flash", "api_key": "test-key", "cache_registry": "memory"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        return ({"GEMINI_API_KEY": "env-key"}, {"model": "gemini-2.5-flash"}, {"api_key": "env-key"})


# Each cache creation returns a new name: identical create requests must replay in recorded order.
@pytest.mark.vcr(allow_playback_repeats=False)
class TestChatGeminiStandard(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _recorded(self, cassette: Cassette) -> None:
        self.recorded = cassette

    @property
    def chat_model_class(self) -> type[ChatGemini]:
        return ChatGemini

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(PARAMS)

    @property
    def enable_vcr_tests(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gemini-2.5-flash-lite"

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[str]]:  # type: ignore[override]
        details = ["cache_read_input", "cache_creation_input", "reasoning_output"]
        return {"invoke": details, "stream": details}

    def invoke_with_cache_creation_input(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGemini(**PARAMS, cache_mode="always")
        reply = _run(llm, [("system", LONG_SYSTEM_PROMPT), ("human", "Which rule matters most?")], stream)
        # the size of the resource this call created, as the server reported it
        (created,) = self.recorded.created_cache_tokens(reply.response_metadata["cache"]["name"])
        assert_gemini_reported(
            reply.usage_metadata, self.recorded.usage(reply.response_metadata["id"]), written=created
        )
        return reply

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGemini(**PARAMS, cache_mode="always")
        prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "Summarize the style guide in one line.")]
        _run(llm, prompt, stream)  # creates the cache
        read = _run(llm, prompt, stream)
        sent = self.recorded.usage(read.response_metadata["id"])
        (resource,) = self.recorded.created_cache_tokens(read.response_metadata["cache"]["name"])
        assert gemini_cached(sent) == resource > 0  # the recording: a read of the whole cache
        assert_gemini_reported(read.usage_metadata, sent)
        return read

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGemini(**PARAMS, thinking_budget=512)
        reply = _run(llm, "What is 17 * 23? Think it through.", stream)
        assert_gemini_reported(reply.usage_metadata, self.recorded.usage(reply.response_metadata["id"]))
        return reply


@pytest.mark.vcr(allow_playback_repeats=False)
def test_cached_usage_replays_exactly(cassette: Cassette) -> None:
    llm = ChatGemini(**PARAMS, cache_mode="always")
    prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "Name the three most important rules.")]
    created = llm.invoke(prompt)
    read = llm.invoke(prompt)
    assert created.usage_metadata and read.usage_metadata
    # usageMetadata.totalTokenCount of the resource, as created on the server
    (resource_tokens,) = cassette.created_cache_tokens(created.response_metadata["cache"]["name"])
    assert created.usage_metadata["input_token_details"]["cache_creation"] == resource_tokens
    assert created.response_metadata["cache"]["tokens"] == resource_tokens
    assert_gemini_reported(
        created.usage_metadata, cassette.usage(created.response_metadata["id"]), written=resource_tokens
    )
    assert_gemini_reported(read.usage_metadata, cassette.usage(read.response_metadata["id"]))
    assert gemini_cached(cassette.usage(read.response_metadata["id"])) == resource_tokens
    assert read.response_metadata["cache"]["name"] == created.response_metadata["cache"]["name"]
