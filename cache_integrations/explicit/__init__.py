"""Explicit provider caches (Gemini `cachedContents`): the manager and the registries it shares."""

from __future__ import annotations

from .manager import (
    DISPLAY_PREFIX,
    CacheDecision,
    CacheHandle,
    CacheMode,
    CacheUse,
    ExplicitCacheClient,
    ExplicitCacheManager,
)
from .registry import (
    CacheEntry,
    CacheRegistry,
    MemoryRegistry,
    SQLiteRegistry,
    default_registry_path,
    registry_from_spec,
)

__all__ = [
    "DISPLAY_PREFIX",
    "CacheDecision",
    "CacheEntry",
    "CacheHandle",
    "CacheMode",
    "CacheRegistry",
    "CacheUse",
    "ExplicitCacheClient",
    "ExplicitCacheManager",
    "MemoryRegistry",
    "SQLiteRegistry",
    "default_registry_path",
    "registry_from_spec",
]
