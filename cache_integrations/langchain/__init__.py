"""LangChain integration: cache-aware chat models, prompt caching for any chat model, the cache usage handler.

Each name is imported on first use (PEP 562), so ``from cache_integrations.langchain import ChatGLM`` loads
the chat model and what its calls need, not the prompt linter (langchain-core's prompt templates, jinja2),
the Gemini stack or the agent middleware.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .caching import PromptCachingChatModel, with_prompt_caching
    from .callbacks import CacheUsageCallbackHandler, get_cache_usage_callback
    from .chat_models import ChatGLM
    from .factory import init_chat_model
    from .gemini import ChatGemini
    from .lint import lint_prompt
    from .middleware import PromptCachingMiddleware
    from .openai_compatible import ChatOpenAICompatible
    from .pinned import PinnedContext

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

# name -> the submodule defining it. The middleware needs the `langchain` package (v1 agents), not only
# langchain-core.
_WHERE = {
    "CacheUsageCallbackHandler": "callbacks",
    "ChatGLM": "chat_models",
    "ChatGemini": "gemini",
    "ChatOpenAICompatible": "openai_compatible",
    "PinnedContext": "pinned",
    "PromptCachingChatModel": "caching",
    "PromptCachingMiddleware": "middleware",
    "get_cache_usage_callback": "callbacks",
    "init_chat_model": "factory",
    "lint_prompt": "lint",
    "with_prompt_caching": "caching",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
