"""LangChain integration: cache-aware chat models and the cache usage callback handler."""

from __future__ import annotations

from .callbacks import CacheUsageCallbackHandler, get_cache_usage_callback
from .chat_models import ChatGLM
from .gemini import ChatGemini, PinnedContext
from .lint import lint_prompt

__all__ = [
    "CacheUsageCallbackHandler",
    "ChatGLM",
    "ChatGemini",
    "PinnedContext",
    "get_cache_usage_callback",
    "lint_prompt",
]
