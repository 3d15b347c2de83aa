"""langchain-tests' standard suites for ChatGemini: unit, and integration replayed from cassettes.

The cassettes hold Gemini's wire format (usageMetadata inclusive of cachedContentTokenCount,
cachedContents resources). Re-record against the real API with
`GEMINI_API_KEY=... python -m tests.record_cassettes --real`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from cache_integrations.langchain import ChatGemini

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
        return _run(llm, [("system", LONG_SYSTEM_PROMPT), ("human", "Which rule matters most?")], stream)

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGemini(**PARAMS, cache_mode="always")
        prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "Summarize the style guide in one line.")]
        _run(llm, prompt, stream)  # creates the cache
        return _run(llm, prompt, stream)

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGemini(**PARAMS, thinking_budget=512)
        return _run(llm, "What is 17 * 23? Think it through.", stream)


@pytest.mark.vcr(allow_playback_repeats=False)
def test_cached_usage_replays_exactly() -> None:
    llm = ChatGemini(**PARAMS, cache_mode="always")
    prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "Name the three most important rules.")]
    created = llm.invoke(prompt)
    read = llm.invoke(prompt)
    assert created.usage_metadata and read.usage_metadata
    tokens = created.response_metadata["cache"]["tokens"]
    assert created.usage_metadata["input_token_details"]["cache_creation"] == tokens
    assert read.usage_metadata["input_token_details"]["cache_read"] == tokens > 1000
    assert read.response_metadata["cache"]["name"] == created.response_metadata["cache"]["name"]
