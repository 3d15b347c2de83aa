"""LangChain integration: cache-aware chat models and the cache usage callback handler."""

from __future__ import annotations

from .callbacks import CacheUsageCallbackHandler, get_cache_usage_callback
from .chat_models import ChatGLM

__all__ = ["CacheUsageCallbackHandler", "ChatGLM", "get_cache_usage_callback"]
