"""Where explicit caches are remembered: prefix fingerprint -> provider cache name.

The warm path of an explicit cache must not ask the provider anything (Gemini can only *list* caches,
with no filter: LiteLLM's list-per-request costs ~1.5 s). So every cache this library creates is
recorded here, together with what the provider taught us (a model's minimum cache size, prefixes
known to be too small) and how often each prefix is sent (the auto policy's evidence).

`MemoryRegistry` serves one process; `SQLiteRegistry` (the default) is shared by every process on a
host; `RedisRegistry` by a fleet. Entries are namespaced by a fingerprint of the credential and
endpoint, so a cache created under one key is never offered to another.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _forksafe
from ._base import CacheEntry, CacheRegistry, FileEntry, mask_url

if TYPE_CHECKING:
    from .sqlite import SQLiteRegistry

logger = logging.getLogger(__name__)

__all__ = [
    "CacheEntry",
    "CacheRegistry",
    "FileEntry",
    "MemoryRegistry",
    "SQLiteRegistry",
    "default_registry_path",
    "registry_from_spec",
]

DEFAULT_MAX_SENDS = 10_000
"""How many prefixes' send counts a registry keeps (the least recently sent are dropped first)."""


class MemoryRegistry(CacheRegistry):
    """Per-process registry; also the fallback when a shared one is unavailable.

    Send counts older than their window are dropped and at most `max_sends` prefixes are counted;
    entries of expired caches are swept as new ones arrive.
    """

    def __init__(self, *, max_sends: int = DEFAULT_MAX_SENDS) -> None:
        if max_sends < 1:
            raise ValueError(f"max_sends must be a positive int, got {max_sends!r}")
        self.max_sends = max_sends
        self._entries: dict[tuple[str, str], CacheEntry] = {}
        self._sweep_at = 1024
        self._sends: dict[tuple[str, str], tuple[float, int]] = {}  # least recently sent first
        self._mins: dict[tuple[str, str], int] = {}
        self._small: dict[tuple[str, str], int] = {}
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}
        self._files: dict[tuple[str, str], FileEntry] = {}
        self._facts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        _forksafe.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> CacheEntry | None:
        return self._entries.get((namespace, key))

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[(entry.namespace, entry.key)] = entry
            if len(self._entries) > self._sweep_at:  # amortised: sweep when the dict has doubled
                now = entry.created_at
                self._entries = {k: e for k, e in self._entries.items() if e.expire_at > now}
                self._sweep_at = max(1024, 2 * len(self._entries))

    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is not None:
                self._entries[(namespace, key)] = replace(
                    entry,
                    uses=entry.uses + 1,
                    last_used=now,
                    expire_at=entry.expire_at if expire_at is None else expire_at,
                )

    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        with self._lock:
            entry = self._entries.get((namespace, key))
            if entry is not None and (name is None or entry.name == name):
                del self._entries[(namespace, key)]

    def entries(self, namespace: str | None = None) -> list[CacheEntry]:
        with self._lock:
            return [e for e in self._entries.values() if namespace is None or e.namespace == namespace]

    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        with self._lock:
            start, count = self._sends.pop((namespace, key), (now, 0))
            if now - start > window:
                start, count = now, 0
            self._sends[(namespace, key)] = (start, count + 1)  # re-inserted: most recently sent last
            while self._sends:
                oldest = next(iter(self._sends))
                if len(self._sends) <= self.max_sends and now - self._sends[oldest][0] <= window:
                    break
                del self._sends[oldest]
            return count + 1

    def min_tokens(self, namespace: str, model: str) -> int | None:
        return self._mins.get((namespace, model))

    def learn_min_tokens(self, namespace: str, model: str, min_tokens: int) -> None:
        with self._lock:
            self._mins[(namespace, model)] = min_tokens

    def too_small(self, namespace: str, key: str) -> int | None:
        return self._small.get((namespace, key))

    def mark_too_small(self, namespace: str, key: str, tokens: int) -> None:
        with self._lock:
            self._small[(namespace, key)] = tokens

    def get_file(self, namespace: str, key: str) -> FileEntry | None:
        return self._files.get((namespace, key))

    def find_file(self, namespace: str, name: str) -> FileEntry | None:
        with self._lock:
            return next((f for f in self._files.values() if f.namespace == namespace and f.name == name), None)

    def put_file(self, entry: FileEntry) -> None:
        with self._lock:
            self._files[(entry.namespace, entry.key)] = entry
            if len(self._files) > 1024:  # files live 48 hours: drop the long expired
                now = entry.created_at
                self._files = {k: f for k, f in self._files.items() if f.expire_at > now}

    def forget_file(self, namespace: str, key: str, *, name: str | None = None) -> None:
        with self._lock:
            found = self._files.get((namespace, key))
            if found is not None and (name is None or found.name == name):
                del self._files[(namespace, key)]

    def file_entries(self, namespace: str | None = None) -> list[FileEntry]:
        with self._lock:
            return [f for f in self._files.values() if namespace is None or f.namespace == namespace]

    def fact(self, namespace: str, kind: str, subject: str) -> int | None:
        return self._facts.get((namespace, kind, subject))

    def set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        with self._lock:
            self._facts[(namespace, kind, subject)] = value

    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        with self._lock:
            holder = self._leases.get((namespace, key))
            if holder is None or holder[0] == owner or holder[1] <= now:
                self._leases[(namespace, key)] = (owner, now + ttl)
                return True
            return False

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        with self._lock:
            holder = self._leases.get((namespace, key))
            if holder is not None and holder[0] == owner:
                del self._leases[(namespace, key)]


# -- where the default registry lives ------------------------------------------------------------


def _user_cache_dir() -> Path:
    """The platform's per-user cache directory; raises RuntimeError when the user has no home."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg)
    return Path.home() / ".cache"


def _temp_registry_path() -> Path:
    """A per-user directory under the temp dir, for users with no usable home (arbitrary-uid containers)."""
    user = str(os.getuid()) if hasattr(os, "getuid") else (os.environ.get("USERNAME") or "user")
    return Path(tempfile.gettempdir()) / f"cache_integrations-{user}" / "registry.sqlite3"


def _private_dir(path: Path) -> None:
    """Create `path` for this user only; refuse one that another user could have planted."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not hasattr(os, "getuid"):
        return
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(f"{path} is not a private directory of this user")


def _default_path() -> tuple[Path, str | None]:
    """The default registry file, and why it is not in the user's cache directory (if it is not)."""
    if home := os.environ.get("CACHE_INTEGRATIONS_HOME"):
        return Path(home) / "registry.sqlite3", None
    try:
        return _user_cache_dir() / "cache_integrations" / "registry.sqlite3", None
    except (RuntimeError, KeyError, OSError) as exc:  # no HOME and no passwd entry for this uid
        return _temp_registry_path(), f"this user has no home directory ({exc})"


def default_registry_path() -> Path:
    """`$CACHE_INTEGRATIONS_HOME`, the platform's user cache directory, or, for a user without a home
    directory (a container running under an arbitrary uid), a private directory under the temp dir."""
    return _default_path()[0]


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    logger.warning("%s", message)


def _default_registry() -> CacheRegistry:
    """The default SQLite file; else one under the temp dir; else a per-process registry (one warning)."""
    import sqlite3

    from .sqlite import SQLiteRegistry

    path, why = _default_path()
    if why is None:
        try:
            return SQLiteRegistry(path)
        except (sqlite3.Error, OSError) as exc:
            why = f"cannot open the cache registry {path} ({type(exc).__name__}: {exc})"
            path = _temp_registry_path()
    try:
        _private_dir(path.parent)
        registry = SQLiteRegistry(path)
    except (sqlite3.Error, OSError) as exc:
        _warn_once(
            f"{why}; and cannot use {path} either ({type(exc).__name__}: {exc}): "
            "caches will not be shared between processes"
        )
        return MemoryRegistry()
    _warn_once(f"{why}; keeping the cache registry in {path} (set CACHE_INTEGRATIONS_HOME to choose)")
    return registry


def registry_from_spec(spec: CacheRegistry | str | None) -> CacheRegistry:
    """A registry from a setting: None or ``"sqlite"`` (the default file), ``"sqlite:///<path>"``,
    ``"redis://host:port/db"`` (or ``rediss://``), ``"memory"``, or a `CacheRegistry` object.

    A SQLite file that cannot be opened (unwritable, corrupt) degrades to a per-process registry
    with a warning: caching still works, it is just not shared between processes. The default file
    falls back to a private directory under the temp dir first (no home directory, read-only home).
    """
    if isinstance(spec, CacheRegistry):
        return spec
    if spec == "memory":
        return MemoryRegistry()
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisRegistry

        return RedisRegistry(spec)
    if spec is None or spec == "sqlite":
        return _default_registry()
    if isinstance(spec, str) and spec.startswith("sqlite:///"):
        import sqlite3

        from .sqlite import SQLiteRegistry

        path = spec.removeprefix("sqlite:///")
        try:
            return SQLiteRegistry(path)
        except (sqlite3.Error, OSError) as exc:
            logger.warning("cannot open the cache registry %s (%s); caches will not be shared", path, exc)
            return MemoryRegistry()
    from ..errors import ConfigurationError

    shown = repr(mask_url(spec)) if isinstance(spec, str) else f"{type(spec).__name__} {mask_url(str(spec))!r}"
    raise ConfigurationError(
        "cache_registry: expected 'memory', 'sqlite', 'sqlite:///<path>', 'redis://host:port/db' "
        f"or a CacheRegistry, got {shown}"
    )


def __getattr__(name: str) -> Any:
    # sqlite3 is imported when a SQLite registry is first used, not with every model.
    if name == "SQLiteRegistry":
        from .sqlite import SQLiteRegistry

        return SQLiteRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
