"""Every registry records uploaded files (by content key, findable by file name) and learned facts."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cache_integrations.explicit import CacheRegistry, FileEntry, MemoryRegistry, SQLiteRegistry
from cache_integrations.explicit.redis import RedisRegistry

EXPIRY = time.time() + 48 * 3600


def _file(key: str = "k1", name: str = "files/abc", **kw: object) -> FileEntry:
    base: dict[str, object] = dict(
        namespace="ns", key=key, name=name, uri=f"https://g.test/v1beta/{name}", mime_type="application/pdf",
        size=1234, sha256="ab" * 32, expire_at=EXPIRY, created_at=1000.0,
    )  # fmt: skip
    base.update(kw)
    return FileEntry(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheRegistry]:
    reg: CacheRegistry
    if request.param == "memory":
        reg = MemoryRegistry()
    elif request.param == "sqlite":
        reg = SQLiteRegistry(tmp_path / "r.sqlite3")
    else:
        reg = RedisRegistry(request.getfixturevalue("redis_url"), prefix=f"t-{uuid.uuid4().hex[:8]}")
    yield reg
    reg.close()


def test_put_get_find_forget_files(registry: CacheRegistry) -> None:
    assert registry.get_file("ns", "k1") is None and registry.find_file("ns", "files/abc") is None
    entry = _file(state="PROCESSING", display_name="cache-integrations:" + "0" * 40 + " plan", source_path="/d/p.pdf")
    registry.put_file(entry)
    assert registry.get_file("ns", "k1") == entry
    assert registry.find_file("ns", "files/abc") == entry
    assert registry.get_file("other-ns", "k1") is None and registry.find_file("other-ns", "files/abc") is None
    # the content uploaded again: a new name replaces the old one, which is no longer found
    newer = replace(entry, name="files/def", uri="https://g.test/v1beta/files/def", state="ACTIVE", source_path=None)
    registry.put_file(newer)
    assert registry.get_file("ns", "k1") == newer and registry.find_file("ns", "files/def") == newer
    assert registry.find_file("ns", "files/abc") is None
    registry.forget_file("ns", "k1", name="files/abc")  # an older upload: left alone
    assert registry.get_file("ns", "k1") == newer
    registry.put_file(_file(key="k2", name="files/ghi"))
    assert sorted(f.key for f in registry.file_entries("ns")) == ["k1", "k2"]
    registry.forget_file("ns", "k1", name="files/def")
    assert registry.get_file("ns", "k1") is None and registry.find_file("ns", "files/def") is None
    registry.forget_file("ns", "k2")
    assert registry.file_entries("ns") == [] and registry.file_entries() == []


def test_facts(registry: CacheRegistry) -> None:
    assert registry.fact("ns", "no_explicit_cache", "gemini-9") is None
    registry.set_fact("ns", "no_explicit_cache", "gemini-9", 1)
    assert registry.fact("ns", "no_explicit_cache", "gemini-9") == 1
    assert registry.fact("other", "no_explicit_cache", "gemini-9") is None
    assert registry.fact("ns", "other_kind", "gemini-9") is None


def test_redis_file_records_die_with_the_file(redis_url: str) -> None:
    registry = RedisRegistry(redis_url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    registry.put_file(_file(expire_at=time.time() + 60))
    for key in (registry._k("ns", "file", "k1"), registry._k("ns", "filename", "files/abc")):
        assert 0 < registry._client.pttl(key) <= 60_000
    registry.close()


def test_sqlite_files_are_shared_by_connections_and_pruned_long_after_expiry(tmp_path: Path) -> None:
    one, two = SQLiteRegistry(tmp_path / "r.sqlite3"), SQLiteRegistry(tmp_path / "r.sqlite3")
    one.put_file(_file(expire_at=100.0))
    assert two.find_file("ns", "files/abc") == _file(expire_at=100.0)
    two.note_sent("ns", "prefix", now=100.0 + 2 * 3600, window=60.0)  # a write that prunes
    assert one.get_file("ns", "k1") is None


def test_an_existing_registry_file_gains_the_files_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # a file written by a release without files
        db.execute("CREATE TABLE entries (namespace TEXT, key TEXT)")
    registry = SQLiteRegistry(path)
    registry.put_file(_file())
    assert registry.get_file("ns", "k1") == _file()
