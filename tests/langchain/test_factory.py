"""`init_chat_model`: our classes for GLM and Gemini, LangChain's factory wrapped with caching for the rest."""

from __future__ import annotations

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI

from cache_integrations.langchain import ChatGemini, ChatGLM, PromptCachingChatModel, init_chat_model


def test_glm_and_gemini_are_this_packages_models() -> None:
    glm = init_chat_model("zhipuai:glm-4.7", api_key="k")
    assert isinstance(glm, ChatGLM) and glm.model == "glm-4.7"
    gemini = init_chat_model("google_genai:gemini-2.5-flash", cache="always", api_key="k", cache_registry="memory")
    assert isinstance(gemini, ChatGemini) and gemini.cache_mode == "always" and gemini.model == "gemini-2.5-flash"
    assert isinstance(init_chat_model("glm-4.6", model_provider="zai", api_key="k"), ChatGLM)


def test_other_providers_are_langchains_models_wrapped_with_caching() -> None:
    openai = init_chat_model("openai:gpt-5-mini", api_key="k", retention="24h", prompt_cache_key="tenant-1")
    assert isinstance(openai, PromptCachingChatModel) and isinstance(openai.bound, ChatOpenAI)
    assert openai.bound.model_name == "gpt-5-mini"
    assert openai.options == {"retention": "24h", "prompt_cache_key": "tenant-1"}
    claude = init_chat_model("anthropic:claude-sonnet-4-5", api_key="k", ttl="1h")
    assert isinstance(claude, PromptCachingChatModel) and isinstance(claude.bound, ChatAnthropic)
    assert claude.options == {"ttl": "1h"}
    plain = init_chat_model("openai:gpt-5-mini", api_key="k", cache="off")
    assert isinstance(plain, ChatOpenAI)


def test_bad_cache_mode_is_named() -> None:
    with pytest.raises(ValueError, match=r"cache: 'sometimes' is not one of \['auto', 'always', 'off'\]"):
        init_chat_model("openai:gpt-5-mini", cache="sometimes")
