"""Both registries honour the same contract; SQLite is shared between independent connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_integrations.explicit import CacheEntry, CacheRegistry, MemoryRegistry, SQLiteRegistry


def _entry(key: str = "k1", name: str = "cachedContents/a", **kw: object) -> CacheEntry:
    base: dict[str, object] = dict(
        namespace="ns", key=key, name=name, model="gemini-2.5-flash", tokens=5000, expire_at=2000.0,
        created_at=1000.0, last_used=1000.0,
    )  # fmt: skip
    base.update(kw)
    return CacheEntry(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheRegistry]:
    reg: CacheRegistry = MemoryRegistry() if request.param == "memory" else SQLiteRegistry(tmp_path / "r.sqlite3")
    yield reg
    reg.close()


def test_put_get_touch_forget(registry: CacheRegistry) -> None:
    assert registry.get("ns", "k1") is None
    registry.put(_entry(pinned=True))
    assert registry.get("ns", "k1") == _entry(pinned=True)
    registry.touch("ns", "k1", now=1500.0)
    registry.touch("ns", "k1", now=1600.0, expire_at=5000.0)
    got = registry.get("ns", "k1")
    assert got is not None and (got.uses, got.last_used, got.expire_at) == (2, 1600.0, 5000.0)
    registry.forget("ns", "k1", name="cachedContents/other")  # a newer cache: left alone
    assert registry.get("ns", "k1") is not None
    registry.forget("ns", "k1", name="cachedContents/a")
    assert registry.get("ns", "k1") is None


def test_namespaces_never_share_entries(registry: CacheRegistry) -> None:
    registry.put(_entry())
    assert registry.get("other-credential", "k1") is None
    assert registry.entries("other-credential") == [] and len(registry.entries("ns")) == 1


def test_send_counts_reset_after_the_window(registry: CacheRegistry) -> None:
    counts = [registry.note_sent("ns", "k", now=t, window=100.0) for t in (0.0, 10.0, 50.0, 150.0, 160.0)]
    assert counts == [1, 2, 3, 1, 2]


def test_learned_facts(registry: CacheRegistry) -> None:
    assert registry.min_tokens("ns", "gemini-2.5-flash") is None and registry.too_small("ns", "k") is None
    registry.learn_min_tokens("ns", "gemini-2.5-flash", 1024)
    registry.mark_too_small("ns", "k", 16)
    assert registry.min_tokens("ns", "gemini-2.5-flash") == 1024 and registry.too_small("ns", "k") == 16
    assert registry.min_tokens("other", "gemini-2.5-flash") is None


def test_concurrent_send_counts_are_exact(registry: CacheRegistry) -> None:
    def work() -> None:
        for _ in range(50):
            registry.note_sent("ns", "hot", now=1.0, window=1000.0)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert registry.note_sent("ns", "hot", now=1.0, window=1000.0) == 301


def test_sqlite_is_shared_between_connections(tmp_path: Path) -> None:
    a, b = SQLiteRegistry(tmp_path / "shared.sqlite3"), SQLiteRegistry(tmp_path / "shared.sqlite3")
    a.put(_entry())
    a.learn_min_tokens("ns", "gemini-2.5-flash", 4096)
    assert b.get("ns", "k1") == _entry() and b.min_tokens("ns", "gemini-2.5-flash") == 4096
    assert a.note_sent("ns", "k", now=0.0, window=60.0) == 1 and b.note_sent("ns", "k", now=1.0, window=60.0) == 2
    a.close()
    b.close()
