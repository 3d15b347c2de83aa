"""Both registries honour the same contract; SQLite is shared between independent connections."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_integrations.explicit import CacheEntry, CacheRegistry, MemoryRegistry, SQLiteRegistry
from cache_integrations.explicit.redis import RedisRegistry

EXPIRY = time.time() + 3600


def _entry(key: str = "k1", name: str = "cachedContents/a", **kw: object) -> CacheEntry:
    # expire_at is real future time, so a Redis entry (which expires with its cache) stays alive
    base: dict[str, object] = dict(
        namespace="ns", key=key, name=name, model="gemini-2.5-flash", tokens=5000, expire_at=EXPIRY,
        created_at=1000.0, last_used=1000.0,
    )  # fmt: skip
    base.update(kw)
    return CacheEntry(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheRegistry]:
    reg: CacheRegistry
    if request.param == "memory":
        reg = MemoryRegistry()
    elif request.param == "sqlite":
        reg = SQLiteRegistry(tmp_path / "r.sqlite3")
    else:  # a real server; a fresh key prefix per test keeps tests apart
        reg = RedisRegistry(request.getfixturevalue("redis_url"), prefix=f"t-{uuid.uuid4().hex[:8]}")
    yield reg
    reg.close()


def _now(registry: CacheRegistry) -> float:
    """Redis expires keys by its own clock: give it real time; the others take any clock."""
    return time.time() if isinstance(registry, RedisRegistry) else 1000.0


def test_put_get_touch_forget(registry: CacheRegistry) -> None:
    assert registry.get("ns", "k1") is None
    registry.put(_entry(pinned=True))
    assert registry.get("ns", "k1") == _entry(pinned=True)
    later = time.time() + 7200
    registry.touch("ns", "k1", now=1500.0)
    registry.touch("ns", "k1", now=1600.0, expire_at=later)
    got = registry.get("ns", "k1")
    assert got is not None and (got.uses, got.last_used, got.expire_at) == (2, 1600.0, later)
    registry.forget("ns", "k1", name="cachedContents/other")  # a newer cache: left alone
    assert registry.get("ns", "k1") is not None
    registry.forget("ns", "k1", name="cachedContents/a")
    assert registry.get("ns", "k1") is None


def test_namespaces_never_share_entries(registry: CacheRegistry) -> None:
    registry.put(_entry())
    assert registry.get("other-credential", "k1") is None
    assert registry.entries("other-credential") == [] and len(registry.entries("ns")) == 1


def test_send_counts_reset_after_the_window(registry: CacheRegistry) -> None:
    if isinstance(registry, RedisRegistry):  # the window is a key TTL on the server's clock
        counts = [registry.note_sent("ns", "k", now=0.0, window=0.2) for _ in range(3)]
        time.sleep(0.3)
        counts += [registry.note_sent("ns", "k", now=0.0, window=0.2) for _ in range(2)]
    else:
        counts = [registry.note_sent("ns", "k", now=t, window=100.0) for t in (0.0, 10.0, 50.0, 150.0, 160.0)]
    assert counts == [1, 2, 3, 1, 2]


def test_an_expired_entry_is_gone_from_redis(redis_url: str) -> None:
    reg = RedisRegistry(redis_url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    reg.put(_entry(expire_at=time.time() + 0.2))
    assert reg.get("ns", "k1") is not None
    time.sleep(0.35)
    assert reg.get("ns", "k1") is None  # entries expire with the cache they describe
    reg.close()


def test_leases_are_exclusive_renewable_and_taken_over_once_expired(registry: CacheRegistry) -> None:
    now = _now(registry)
    ttl = 0.3 if isinstance(registry, RedisRegistry) else 30.0
    assert registry.acquire_lease("ns", "k", "worker-a", ttl=ttl, now=now)
    assert not registry.acquire_lease("ns", "k", "worker-b", ttl=ttl, now=now)
    assert registry.acquire_lease("ns", "k", "worker-a", ttl=ttl, now=now)  # the holder renews
    assert registry.acquire_lease("ns", "other-key", "worker-b", ttl=ttl, now=now)
    registry.release_lease("ns", "k", "worker-b")  # not the holder: no effect
    assert not registry.acquire_lease("ns", "k", "worker-b", ttl=ttl, now=now)
    # worker-a "crashes" holding the lease: it expires and worker-b takes over
    if isinstance(registry, RedisRegistry):
        time.sleep(ttl + 0.15)
        later = time.time()
    else:
        later = now + ttl + 1
    assert registry.acquire_lease("ns", "k", "worker-b", ttl=ttl, now=later)
    registry.release_lease("ns", "k", "worker-b")
    assert registry.acquire_lease("ns", "k", "worker-c", ttl=ttl, now=later)


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
