"""langchain-tests' standard integration suite for ChatGLM, replayed offline from cassettes.

The cassettes hold GLM's real wire format (usage on the finish chunk, string tool-call arguments,
`call_-...` ids, timestamp-like ids). A developer with a key re-records them against the real API:
`ZHIPUAI_API_KEY=... pytest --record-mode=rewrite tests/langchain/test_standard_integration.py`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk
from langchain_tests.integration_tests import ChatModelIntegrationTests

from cache_integrations.langchain import ChatGLM

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
        return _run(llm, prompt, stream)

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        llm = ChatGLM(**PARAMS, thinking="enabled")
        return _run(llm, "What is 17 * 23? Think it through.", stream)
