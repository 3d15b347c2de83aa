"""Explicit provider caches (Gemini `cachedContents`): the manager and the registries it shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .files import ManagedFiles, UploadedFile
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
    FileEntry,
    MemoryRegistry,
    default_registry_path,
    registry_from_spec,
)

if TYPE_CHECKING:
    from .sqlite import SQLiteRegistry

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
    "FileEntry",
    "ManagedFiles",
    "MemoryRegistry",
    "SQLiteRegistry",
    "UploadedFile",
    "default_registry_path",
    "registry_from_spec",
]


def __getattr__(name: str) -> Any:
    # sqlite3 (and the Redis client) are imported when such a registry is first used, not with every model.
    if name == "SQLiteRegistry":
        from .sqlite import SQLiteRegistry

        return SQLiteRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
