"""Where explicit caches are remembered: prefix fingerprint -> provider cache name.

The warm path of an explicit cache must not ask the provider anything (Gemini can only *list* caches,
with no filter: LiteLLM's list-per-request costs ~1.5 s). So every cache this library creates is
recorded here, together with what the provider taught us (a model's minimum cache size, prefixes
known to be too small) and how often each prefix is sent (the auto policy's evidence).

`MemoryRegistry` serves one process; `SQLiteRegistry` (the default) is shared by every process on a
host. Entries are namespaced by a fingerprint of the credential and endpoint, so a cache created
under one key is never offered to another.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "CacheEntry",
    "CacheRegistry",
    "MemoryRegistry",
    "SQLiteRegistry",
    "default_registry_path",
    "registry_from_spec",
]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One live explicit cache. Times are Unix seconds."""

    namespace: str
    key: str
    name: str
    model: str
    tokens: int
    expire_at: float
    created_at: float
    last_used: float
    uses: int = 0
    pinned: bool = False


class CacheRegistry(ABC):
    """The registry interface. Implementations are thread-safe."""

    @abstractmethod
    def get(self, namespace: str, key: str) -> CacheEntry | None: ...

    @abstractmethod
    def put(self, entry: CacheEntry) -> None:
        """Record (or replace) the cache for `entry.key`."""

    @abstractmethod
    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        """Count a use; move the expiry when the cache was extended."""

    @abstractmethod
    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        """Drop the entry; with `name`, only if it still points at that cache (another process may
        already have replaced it)."""

    @abstractmethod
    def entries(self, namespace: str | None = None) -> list[CacheEntry]: ...

    @abstractmethod
    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        """Count one more send of a prefix; return the sends within the current window."""

    @abstractmethod
    def min_tokens(self, namespace: str, model: str) -> int | None:
        """The minimum cache size the provider reported for `model`, if it did."""

    @abstractmethod
    def learn_min_tokens(self, namespace: str, model: str, min_tokens: int) -> None: ...

    @abstractmethod
    def too_small(self, namespace: str, key: str) -> int | None:
        """The token count of a prefix the provider refused as too small, if it did."""

    @abstractmethod
    def mark_too_small(self, namespace: str, key: str, tokens: int) -> None: ...

    @abstractmethod
    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        """Take the right to create the cache for `key` for `ttl` seconds.

        True when `owner` holds it now (newly, or still). A lease whose holder crashed expires after
        `ttl` and can then be taken over, so a dead creator never blocks a prefix for longer.
        """

    @abstractmethod
    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        """Give the lease back (only if `owner` still holds it)."""

    # Async variants. Local registries answer in microseconds, so the defaults call the sync
    # methods inline; a networked registry (Redis) overrides them with a real async client.

    async def aget(self, namespace: str, key: str) -> CacheEntry | None:
        return self.get(namespace, key)

    async def aput(self, entry: CacheEntry) -> None:
        self.put(entry)

    async def aacquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.acquire_lease(namespace, key, owner, ttl=ttl, now=now)

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        self.release_lease(namespace, key, owner)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryRegistry(CacheRegistry):
    """Per-process registry; also the fallback when a shared one is unavailable."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], CacheEntry] = {}
        self._sends: dict[tuple[str, str], tuple[float, int]] = {}
        self._mins: dict[tuple[str, str], int] = {}
        self._small: dict[tuple[str, str], int] = {}
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> CacheEntry | None:
        return self._entries.get((namespace, key))

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._entries[(entry.namespace, entry.key)] = entry

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
            start, count = self._sends.get((namespace, key), (now, 0))
            if now - start > window:
                start, count = now, 0
            self._sends[(namespace, key)] = (start, count + 1)
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


def default_registry_path() -> Path:
    """`$CACHE_INTEGRATIONS_HOME` or the platform's user cache directory."""
    if home := os.environ.get("CACHE_INTEGRATIONS_HOME"):
        return Path(home) / "registry.sqlite3"
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cache_integrations" / "registry.sqlite3"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    tokens INTEGER NOT NULL, expire_at REAL NOT NULL, created_at REAL NOT NULL, last_used REAL NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS sends (
    namespace TEXT NOT NULL, key TEXT NOT NULL, window_start REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS facts (
    namespace TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (namespace, kind, subject)
);
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""
_COLUMNS = "namespace, key, name, model, tokens, expire_at, created_at, last_used, uses, pinned"


class SQLiteRegistry(CacheRegistry):
    """A registry in one SQLite file (WAL), shared safely by the processes of one host."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 10.0) -> None:
        self.path = Path(path) if path is not None else default_registry_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteRegistry({str(self.path)!r})"

    def _row(self, row: tuple[Any, ...] | None) -> CacheEntry | None:
        if row is None:
            return None
        ns, key, name, model, tokens, expire_at, created_at, last_used, uses, pinned = row
        return CacheEntry(
            str(ns), str(key), str(name), str(model), int(tokens),
            float(expire_at), float(created_at), float(last_used), int(uses), bool(pinned),
        )  # fmt: skip

    def get(self, namespace: str, key: str) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
        return self._row(row)

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.namespace, entry.key, entry.name, entry.model, entry.tokens, entry.expire_at,
                    entry.created_at, entry.last_used, entry.uses, int(entry.pinned),
                ),
            )  # fmt: skip

    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE entries SET uses=uses+1, last_used=?, expire_at=COALESCE(?, expire_at) "
                "WHERE namespace=? AND key=?",
                (now, expire_at, namespace, key),
            )

    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._db.execute("DELETE FROM entries WHERE namespace=? AND key=?", (namespace, key))
            else:
                self._db.execute("DELETE FROM entries WHERE namespace=? AND key=? AND name=?", (namespace, key, name))

    def entries(self, namespace: str | None = None) -> list[CacheEntry]:
        with self._lock:
            if namespace is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM entries").fetchall()
            else:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM entries WHERE namespace=?", (namespace,)).fetchall()
        return [e for e in map(self._row, rows) if e is not None]

    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        with self._lock:
            # One statement, so concurrent processes never lose a count.
            row = self._db.execute(
                "INSERT INTO sends (namespace, key, window_start, count) VALUES (?,?,?,1) "
                "ON CONFLICT(namespace, key) DO UPDATE SET "
                "count = CASE WHEN ? - window_start > ? THEN 1 ELSE count + 1 END, "
                "window_start = CASE WHEN ? - window_start > ? THEN ? ELSE window_start END "
                "RETURNING count",
                (namespace, key, now, now, window, now, window, now),
            ).fetchone()
        return int(row[0])

    def _fact(self, namespace: str, kind: str, subject: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM facts WHERE namespace=? AND kind=? AND subject=?", (namespace, kind, subject)
            ).fetchone()
        return None if row is None else int(row[0])

    def _set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO facts (namespace, kind, subject, value) VALUES (?,?,?,?)",
                (namespace, kind, subject, value),
            )

    def min_tokens(self, namespace: str, model: str) -> int | None:
        return self._fact(namespace, "min_tokens", model)

    def learn_min_tokens(self, namespace: str, model: str, min_tokens: int) -> None:
        self._set_fact(namespace, "min_tokens", model, min_tokens)

    def too_small(self, namespace: str, key: str) -> int | None:
        return self._fact(namespace, "too_small", key)

    def mark_too_small(self, namespace: str, key: str, tokens: int) -> None:
        self._set_fact(namespace, "too_small", key, tokens)

    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        with self._lock:
            # One statement: take a free or expired lease, renew our own, leave anyone else's.
            row = self._db.execute(
                "INSERT INTO leases (namespace, key, owner, expires_at) VALUES (?,?,?,?) "
                "ON CONFLICT(namespace, key) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at "
                "WHERE leases.owner=excluded.owner OR leases.expires_at <= ? "
                "RETURNING owner",
                (namespace, key, owner, now + ttl, now),
            ).fetchone()
        return row is not None and row[0] == owner

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM leases WHERE namespace=? AND key=? AND owner=?", (namespace, key, owner))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def registry_from_spec(spec: CacheRegistry | str | None) -> CacheRegistry:
    """A registry from a setting: None or ``"sqlite"`` (the default file), ``"sqlite:///<path>"``,
    ``"redis://host:port/db"`` (or ``rediss://``), ``"memory"``, or a `CacheRegistry` object.

    A SQLite file that cannot be opened (unwritable, corrupt) degrades to a per-process registry
    with a warning: caching still works, it is just not shared between processes.
    """
    if isinstance(spec, CacheRegistry):
        return spec
    if spec == "memory":
        return MemoryRegistry()
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisRegistry

        return RedisRegistry(spec)
    if spec is None or spec == "sqlite" or (isinstance(spec, str) and spec.startswith("sqlite:///")):
        path = None if spec in (None, "sqlite") else str(spec).removeprefix("sqlite:///")
        try:
            return SQLiteRegistry(path)
        except (sqlite3.Error, OSError) as exc:
            logger.warning("cannot open the cache registry %s (%s); caches will not be shared", path, exc)
            return MemoryRegistry()
    from ..errors import ConfigurationError

    raise ConfigurationError(
        "cache_registry: expected 'memory', 'sqlite', 'sqlite:///<path>', 'redis://host:port/db' "
        f"or a CacheRegistry, got {spec!r}"
    )
