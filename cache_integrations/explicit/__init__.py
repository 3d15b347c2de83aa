"""Explicit provider caches (Gemini `cachedContents`): the manager and the registries it shares."""

from __future__ import annotations

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
    "FileEntry",
    "ManagedFiles",
    "MemoryRegistry",
    "SQLiteRegistry",
    "UploadedFile",
    "default_registry_path",
    "registry_from_spec",
]
