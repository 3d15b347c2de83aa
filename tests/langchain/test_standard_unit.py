"""langchain-tests' standard unit suite for ChatGLM."""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from cache_integrations.langchain import ChatGLM


class TestChatGLMUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatGLM]:
        return ChatGLM

    @property
    def chat_model_params(self) -> dict[str, str]:
        return {"model": "glm-4.7", "api_key": "test-key"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        return (
            {"ZHIPUAI_API_KEY": "env-key", "ZHIPUAI_BASE_URL": "https://api.z.ai/api/paas/v4"},
            {"model": "glm-4.7"},
            {"api_key": "env-key", "base_url": "https://api.z.ai/api/paas/v4"},
        )
