"""Registries: warm-path lookup latency, and the thundering herd across processes.

Lookup: the time of one registry hit (what every warm request pays before it is sent), per
registry, over many lookups. Herd: 4 processes x 25 concurrent cold requests for one ~4k-token
prefix against the emulator over loopback HTTP (50 ms latency per request), with a per-process
registry only ("no shared registry", what a library without one does) versus SQLite and Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cache_integrations.explicit import CacheEntry, CacheRegistry, MemoryRegistry, SQLiteRegistry
from cache_integrations.testing import Emulator
from cache_integrations.testing.fleet import run_fleet

DOCUMENT = "\n".join(f"Clause {i}: supplier {i} must deliver within {i % 9 + 1} days." for i in range(400))


@dataclass
class Lookup:
    registry: str
    microseconds_per_hit: float


@dataclass
class Herd:
    registry: str
    requests: int
    caches_created: int
    requests_served_from_cache: int
    seconds: float


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port (None when redis-server is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _lookup_us(registry: CacheRegistry, n: int) -> float:
    entry = CacheEntry("ns", "k", "cachedContents/x", "gemini-2.5-flash", 5000, time.time() + 3600, 0.0, 0.0)
    registry.put(entry)
    assert registry.get("ns", "k") is not None
    start = time.perf_counter()
    for _ in range(n):
        registry.get("ns", "k")
    return (time.perf_counter() - start) / n * 1e6


def measure(lookups: int = 20_000) -> tuple[list[Lookup], list[Herd]]:
    from cache_integrations.explicit.redis import RedisRegistry

    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis_url:
        registries: dict[str, CacheRegistry] = {
            "in-memory": MemoryRegistry(),
            "SQLite (WAL file)": SQLiteRegistry(Path(tmp) / "lookup.sqlite3"),
        }
        if redis_url:
            registries["Redis (loopback)"] = RedisRegistry(redis_url)
        lookup = [Lookup(name, _lookup_us(reg, lookups)) for name, reg in registries.items()]

        herd_specs = {"no shared registry (per process)": "memory", "SQLite": f"sqlite:///{Path(tmp) / 'herd.sqlite3'}"}
        if redis_url:
            herd_specs["Redis"] = redis_url.rsplit("/", 1)[0] + "/1"
        herd = []
        for name, spec in herd_specs.items():
            emu = Emulator(latency=0.05)
            with emu.serve() as server:
                result = run_fleet(server.gemini_base_url, spec, DOCUMENT, processes=4, threads=25)
            herd.append(
                Herd(
                    name,
                    len(result.replies),
                    emu.counters.caches_created,
                    sum(1 for cached, _ in result.replies if cached > 0),
                    result.seconds,
                )
            )
        return lookup, herd
