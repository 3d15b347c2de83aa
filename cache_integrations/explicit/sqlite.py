"""`SQLiteRegistry`: the default registry, one WAL file shared by the processes of a host.

Three hazards of a shared SQLite file are handled here rather than left to the user:

* fork: a connection must never be used by two processes. A forked child drops its inherited
  connection (without closing it, which could checkpoint under the parent's feet) and opens its own.
* a file deleted while in use (``rm -rf ~/.cache``, a temp cleaner): open connections keep writing to
  the unlinked inode while new processes create a fresh file, a silent split-brain, and SQLite would
  even reuse the deleted database's ``-shm`` index for the new file. Each registry compares the
  path's inode with the one it opened, at most once per `check_every` seconds, and reopens (with a
  warning) when they differ; whoever (re)creates the file first removes the dead database's
  ``-wal``/``-shm``/``-journal``, under a lock file so two processes never race on it.
* unbounded growth: send counts older than their window, expired leases and entries of long-expired
  caches are deleted now and then, and at most `max_sends` send counts are kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import _forksafe
from ._base import CacheEntry, CacheRegistry, FileEntry

__all__ = ["SQLiteRegistry"]

logger = logging.getLogger(__name__)

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
CREATE INDEX IF NOT EXISTS sends_by_age ON sends (window_start);
CREATE TABLE IF NOT EXISTS facts (
    namespace TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (namespace, kind, subject)
);
CREATE TABLE IF NOT EXISTS files (
    namespace TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, uri TEXT NOT NULL, mime_type TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, expire_at REAL NOT NULL, created_at REAL NOT NULL,
    state TEXT NOT NULL, display_name TEXT NOT NULL, source_path TEXT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS files_by_name ON files (namespace, name);
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""
_COLUMNS = "namespace, key, name, model, tokens, expire_at, created_at, last_used, uses, pinned"
_FILE_COLUMNS = (
    "namespace, key, name, uri, mime_type, size, sha256, expire_at, created_at, state, display_name, source_path"
)
_STALE_SUFFIXES = ("-wal", "-shm", "-journal")
_EXPIRED_ENTRY_GRACE = 3600.0  # an entry is deleted once its cache has been dead for this long

# Connections inherited through fork(): never used, never closed (closing one in the child could
# checkpoint or delete the parent's WAL). Each is kept alive for the life of the process.
_inherited: list[sqlite3.Connection] = []


def _keep_forever(db: sqlite3.Connection) -> None:
    _inherited.append(db)
    with contextlib.suppress(Exception):  # also through interpreter shutdown, which clears module globals
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(db))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` held by this process (POSIX ``flock``; a no-op on Windows,
    where an open database cannot be deleted in the first place)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:  # not a lock file someone deleted while we waited for it
                yield
                return
        finally:
            os.close(fd)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


class SQLiteRegistry(CacheRegistry):
    """A registry in one SQLite file (WAL), shared safely by the processes of one host.

    `check_every` is how often (seconds of `clock`, a monotonic clock) a registry verifies that its
    file is still the one at `path`; `max_sends` bounds the send counts kept.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 10.0,
        check_every: float = 2.0,
        max_sends: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sends < 1:
            raise ValueError(f"max_sends must be a positive int, got {max_sends!r}")
        if path is None:
            from .registry import default_registry_path

            path = default_registry_path()
        self.path = Path(path)
        self.timeout = timeout
        self.check_every = float(check_every)
        self.max_sends = max_sends
        self.clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._sends_since_prune = 0
        self._pruned_at = -math.inf
        self._identity: tuple[int, int] | None = None
        self._checked = 0.0
        self._db: sqlite3.Connection | None = self._open()
        _forksafe.register(self)

    def __repr__(self) -> str:
        return f"SQLiteRegistry({str(self.path)!r})"

    # -- the connection: this process's own, to the file that is at `path` now --------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.path):
            if not self.path.exists():  # a new file: whatever sits next to it belongs to a deleted one
                for suffix in _STALE_SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.path}{suffix}")
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._identity = _identity(self.path)
            except BaseException:
                db.close()
                raise
        self._checked = self.clock()
        return db

    def _conn(self) -> sqlite3.Connection:
        """The connection to use (hold `_lock`): reopened after a fork or when the file was replaced."""
        db = self._db
        if db is None:
            db = self._db = self._open()
        elif not self._closed and self.clock() - self._checked >= self.check_every:
            self._checked = self.clock()
            if _identity(self.path) != self._identity:
                logger.warning(
                    "the cache registry %s was deleted or replaced while in use; reopening it so every "
                    "process shares one file again",
                    self.path,
                )
                self._db = None
                db.close()  # SQLite neither checkpoints nor deletes anything for a moved database
                db = self._db = self._open()
        return db

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._db is not None and not self._closed:
            _keep_forever(self._db)
            self._db = None

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn().execute(sql, params)

    # -- entries ---------------------------------------------------------------------------------

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
            row = (
                self._conn()
                .execute(f"SELECT {_COLUMNS} FROM entries WHERE namespace=? AND key=?", (namespace, key))
                .fetchone()
            )
        return self._row(row)

    def put(self, entry: CacheEntry) -> None:
        self._execute(
            f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                entry.namespace, entry.key, entry.name, entry.model, entry.tokens, entry.expire_at,
                entry.created_at, entry.last_used, entry.uses, int(entry.pinned),
            ),
        )  # fmt: skip

    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        self._execute(
            "UPDATE entries SET uses=uses+1, last_used=?, expire_at=COALESCE(?, expire_at) WHERE namespace=? AND key=?",
            (now, expire_at, namespace, key),
        )

    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        if name is None:
            self._execute("DELETE FROM entries WHERE namespace=? AND key=?", (namespace, key))
        else:
            self._execute("DELETE FROM entries WHERE namespace=? AND key=? AND name=?", (namespace, key, name))

    def entries(self, namespace: str | None = None) -> list[CacheEntry]:
        where, params = ("", ()) if namespace is None else (" WHERE namespace=?", (namespace,))
        with self._lock:
            rows = self._conn().execute(f"SELECT {_COLUMNS} FROM entries{where}", params).fetchall()
        return [e for e in map(self._row, rows) if e is not None]

    # -- evidence and facts -----------------------------------------------------------------------

    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        with self._lock:
            db = self._conn()
            # One statement, so concurrent processes never lose a count.
            row = db.execute(
                "INSERT INTO sends (namespace, key, window_start, count) VALUES (?,?,?,1) "
                "ON CONFLICT(namespace, key) DO UPDATE SET "
                "count = CASE WHEN ? - window_start > ? THEN 1 ELSE count + 1 END, "
                "window_start = CASE WHEN ? - window_start > ? THEN ? ELSE window_start END "
                "RETURNING count",
                (namespace, key, now, now, window, now, window, now),
            ).fetchone()
            self._sends_since_prune += 1
            if self._sends_since_prune >= max(self.max_sends // 10, 1) or now - self._pruned_at >= window:
                self._prune(db, now, window)
        return int(row[0])

    def _prune(self, db: sqlite3.Connection, now: float, window: float) -> None:
        """Drop counts older than the window and the oldest beyond `max_sends`, expired leases, and
        entries of caches dead for a while (all worthless: a count past its window restarts at 1)."""
        self._sends_since_prune, self._pruned_at = 0, now
        db.execute("DELETE FROM sends WHERE window_start < ?", (now - window,))
        db.execute(
            "DELETE FROM sends WHERE rowid IN (SELECT rowid FROM sends ORDER BY window_start DESC LIMIT -1 OFFSET ?)",
            (self.max_sends,),
        )
        db.execute("DELETE FROM leases WHERE expires_at < ?", (now,))
        db.execute("DELETE FROM entries WHERE expire_at < ?", (now - _EXPIRED_ENTRY_GRACE,))
        db.execute("DELETE FROM files WHERE expire_at < ?", (now - _EXPIRED_ENTRY_GRACE,))

    def _fact(self, namespace: str, kind: str, subject: str) -> int | None:
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT value FROM facts WHERE namespace=? AND kind=? AND subject=?", (namespace, kind, subject)
                )
                .fetchone()
            )
        return None if row is None else int(row[0])

    def _set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        self._execute(
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

    def fact(self, namespace: str, kind: str, subject: str) -> int | None:
        return self._fact(namespace, kind, subject)

    def set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        self._set_fact(namespace, kind, subject, value)

    # -- files ------------------------------------------------------------------------------------

    @staticmethod
    def _file_row(row: tuple[Any, ...] | None) -> FileEntry | None:
        if row is None:
            return None
        ns, key, name, uri, mime, size, sha, expire_at, created_at, state, display, source = row
        return FileEntry(
            str(ns), str(key), str(name), str(uri), str(mime), int(size), str(sha),
            float(expire_at), float(created_at), str(state), str(display), None if source is None else str(source),
        )  # fmt: skip

    def _file_query(self, where: str, params: tuple[Any, ...]) -> FileEntry | None:
        with self._lock:
            row = self._conn().execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE {where}", params).fetchone()
        return self._file_row(row)

    def get_file(self, namespace: str, key: str) -> FileEntry | None:
        return self._file_query("namespace=? AND key=?", (namespace, key))

    def find_file(self, namespace: str, name: str) -> FileEntry | None:
        return self._file_query("namespace=? AND name=?", (namespace, name))

    def put_file(self, entry: FileEntry) -> None:
        self._execute(
            f"INSERT OR REPLACE INTO files ({_FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.namespace, entry.key, entry.name, entry.uri, entry.mime_type, entry.size, entry.sha256,
                entry.expire_at, entry.created_at, entry.state, entry.display_name, entry.source_path,
            ),
        )  # fmt: skip

    def forget_file(self, namespace: str, key: str, *, name: str | None = None) -> None:
        if name is None:
            self._execute("DELETE FROM files WHERE namespace=? AND key=?", (namespace, key))
        else:
            self._execute("DELETE FROM files WHERE namespace=? AND key=? AND name=?", (namespace, key, name))

    def file_entries(self, namespace: str | None = None) -> list[FileEntry]:
        where, params = ("", ()) if namespace is None else (" WHERE namespace=?", (namespace,))
        with self._lock:
            rows = self._conn().execute(f"SELECT {_FILE_COLUMNS} FROM files{where}", params).fetchall()
        return [f for f in map(self._file_row, rows) if f is not None]

    # -- leases -----------------------------------------------------------------------------------

    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        with self._lock:
            # One statement: take a free or expired lease, renew our own, leave anyone else's.
            row = (
                self._conn()
                .execute(
                    "INSERT INTO leases (namespace, key, owner, expires_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(namespace, key) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at "
                    "WHERE leases.owner=excluded.owner OR leases.expires_at <= ? "
                    "RETURNING owner",
                    (namespace, key, owner, now + ttl, now),
                )
                .fetchone()
            )
        return row is not None and row[0] == owner

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        self._execute("DELETE FROM leases WHERE namespace=? AND key=? AND owner=?", (namespace, key, owner))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
