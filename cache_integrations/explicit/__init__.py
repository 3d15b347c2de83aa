"""Explicit provider caches (Gemini `cachedContents`): the manager and the registries it shares.

Each name is imported on first use (PEP 562), so importing a light module of this package (``_types`` for
`CacheMode`, say) does not load the manager, the Files API client (httpx), sqlite3 or the Redis client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import CacheEntry, CacheRegistry, FileEntry
    from ._foreign import CacheDecision
    from ._handle import CacheHandle
    from ._types import DISPLAY_PREFIX, CacheMode, CacheUse, ExplicitCacheClient
    from ._uploaded import UploadedFile
    from .files import ManagedFiles
    from .manager import ExplicitCacheManager
    from .registry import MemoryRegistry, default_registry_path, registry_from_spec
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

# name -> the submodule defining it.
_WHERE = {
    "DISPLAY_PREFIX": "_types",
    "CacheDecision": "_foreign",
    "CacheEntry": "_base",
    "CacheHandle": "_handle",
    "CacheMode": "_types",
    "CacheRegistry": "_base",
    "CacheUse": "_types",
    "ExplicitCacheClient": "_types",
    "ExplicitCacheManager": "manager",
    "FileEntry": "_base",
    "ManagedFiles": "files",
    "MemoryRegistry": "registry",
    "SQLiteRegistry": "sqlite",
    "UploadedFile": "_uploaded",
    "default_registry_path": "registry",
    "registry_from_spec": "registry",
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
