"""LangChain integration: cache-aware chat models, prompt caching for any chat model, the cache usage handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .caching import PromptCachingChatModel, with_prompt_caching
from .callbacks import CacheUsageCallbackHandler, get_cache_usage_callback
from .chat_models import ChatGLM
from .factory import init_chat_model
from .gemini import ChatGemini, PinnedContext
from .lint import lint_prompt
from .openai_compatible import ChatOpenAICompatible

if TYPE_CHECKING:
    from .middleware import PromptCachingMiddleware

__all__ = [
    "CacheUsageCallbackHandler",
    "ChatGLM",
    "ChatGemini",
    "ChatOpenAICompatible",
    "PinnedContext",
    "PromptCachingChatModel",
    "PromptCachingMiddleware",
    "get_cache_usage_callback",
    "init_chat_model",
    "lint_prompt",
    "with_prompt_caching",
]


def __getattr__(name: str) -> Any:
    # The middleware needs the `langchain` package (v1 agents), not only langchain-core: import it on use.
    if name == "PromptCachingMiddleware":
        from .middleware import PromptCachingMiddleware

        return PromptCachingMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
