"""langchain-tests' standard integration suite for ChatGLM, replayed offline from cassettes.

The cassettes are emulator recordings in GLM's wire format (usage on the finish chunk, string tool-call
arguments, `call_-...` ids, timestamp-like ids), not captures of the real API (tests/cassettes/README.md).
A developer with a key re-records them against the real API:
`ZHIPUAI_API_KEY=... python -m tests.record_cassettes --real`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk
from langchain_tests.integration_tests import ChatModelIntegrationTests

from cache_integrations.langchain import ChatGLM

from ..wire import Cassette, assert_glm_reported, glm_cached
from .long_prompt import LONG_SYSTEM_PROMPT

PARAMS: dict[str, Any] = {"model": "glm-4.7", "api_key": os.environ.get("ZHIPUAI_API_KEY", "cassette-replay")}


def _run(llm: ChatGLM, input_: Any, stream: bool) -> AIMessage:
    if not stream:
        return llm.invoke(input_)
    full: BaseMessageChunk | None = None
    for chunk in llm.stream(input_):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


@pytest.mark.vcr
class TestChatGLMStandard(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _recorded(self, cassette: Cassette) -> None:
        self.recorded = cassette

    @property
    def chat_model_class(self) -> type[ChatGLM]:
        return ChatGLM

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(PARAMS)

    @property
    def enable_vcr_tests(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "glm-4.5-air"

    @property
    def supported_usage_metadata_details(self) -> dict[str, list[str]]:  # type: ignore[override]
        return {"invoke": ["cache_read_input", "reasoning_output"], "stream": ["cache_read_input", "reasoning_output"]}

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGLM(**PARAMS)
        prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "Summarize the style guide in one line.")]
        _run(llm, prompt, stream)  # warms the provider's prefix cache
        warm = _run(llm, prompt, stream)
        sent = self.recorded.usage(warm.response_metadata["id"])
        assert glm_cached(sent) > 0  # the recording holds a cache hit
        assert_glm_reported(warm.usage_metadata, sent)  # reported exactly as the server sent it
        return warm

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGLM(**PARAMS, thinking="enabled")
        reply = _run(llm, "What is 17 * 23? Think it through.", stream)
        assert_glm_reported(reply.usage_metadata, self.recorded.usage(reply.response_metadata["id"]))
        return reply
