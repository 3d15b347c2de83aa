"""One explicit cache per prefix across processes: SQLite on one host, Redis for fleets.

The emulator serves Gemini over real loopback HTTP with a little latency, so concurrent creations
really overlap; workers are separate processes, as in a real deployment.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cache_integrations.explicit import CacheEntry
from cache_integrations.explicit.redis import RedisRegistry
from cache_integrations.langchain import ChatGemini
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.testing import Emulator
from cache_integrations.testing.fleet import run_fleet

DOCUMENT = "\n".join(f"Clause {i}: supplier {i} must deliver within {i % 9 + 1} days." for i in range(400))
pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


def _registries(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'fleet.sqlite3'}", "redis": redis_url}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_times_25_cold_requests_create_exactly_one_cache(
    kind: str, tmp_path: Path, redis_url: str
) -> None:
    registry = _registries(tmp_path, redis_url)[kind]
    if kind == "redis":
        registry = f"{redis_url.rsplit('/', 1)[0]}/1"  # a database of its own
    emu = Emulator(latency=0.05)
    with emu.serve() as server:
        results = run_fleet(server.gemini_base_url, registry, DOCUMENT, processes=4, threads=25).replies
    assert len(results) == 100
    assert emu.counters.caches_created == 1
    names = {name for _, name in results}
    assert len(names) == 1 and next(iter(names)).startswith("cachedContents/")
    assert all(cached > 1000 for cached, _ in results)  # the other 99 waited and reused it


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_killed_creators_lease_is_taken_over(kind: str, tmp_path: Path, redis_url: str) -> None:
    registry = _registries(tmp_path, redis_url)[kind]
    emu = Emulator()
    with emu.serve() as server:
        llm = ChatGemini(
            api_key="fleet-key", base_url=server.gemini_base_url, cache_registry=registry, cache_mode="always"
        )
        manager = llm.cache_manager
        manager.lease_poll = 0.02
        prompt = [("system", DOCUMENT), ("human", "Who delivers fastest?")]
        key = manager.prefix_key(ChatRequest(llm.model, (Message("system", DOCUMENT), Message("user", "x"))))
        assert key is not None
        doomed = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tests.explicit.lease_holder import hold_lease_and_hang as h; "
             "h(sys.argv[1], sys.argv[2], sys.argv[3], 1.5)", registry, manager.namespace, key],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "lease held"
        doomed.kill()  # the creator dies holding the lease
        doomed.wait()
        doomed.stdout.close()
        started = time.monotonic()
        reply = llm.invoke(prompt)
        waited = time.monotonic() - started
    assert reply.response_metadata["cache"]["created"] is True and emu.counters.caches_created == 1
    assert 0.5 < waited < 1.5 + 2.0  # it waited for the dead lease to expire, not for lease_wait


def test_an_unreachable_registry_degrades_to_no_sharing(caplog: pytest.LogCaptureFixture) -> None:
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    emu = Emulator()
    llm = ChatGemini(
        api_key="k", base_url="http://emulator/v1beta", cache_registry=dead, cache_mode="always",
        http_client=__import__("httpx").Client(transport=emu.transport()),
    )  # fmt: skip
    caplog.set_level(logging.WARNING)
    replies = [llm.invoke([("system", DOCUMENT), ("human", f"Q{i}")]) for i in range(3)]
    assert all(r.usage_metadata and r.usage_metadata["input_token_details"]["cache_read"] > 1000 for r in replies[1:])
    assert emu.counters.caches_created == 1  # still one cache within this process
    warnings = [r for r in caplog.records if "continuing without sharing" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()


def test_a_corrupt_sqlite_registry_degrades_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corrupt = tmp_path / "registry.sqlite3"
    corrupt.write_bytes(b"this is not a database" * 100)
    emu = Emulator()
    caplog.set_level(logging.WARNING)
    llm = ChatGemini(
        api_key="k", base_url="http://emulator/v1beta", cache_registry=f"sqlite:///{corrupt}", cache_mode="always",
        http_client=__import__("httpx").Client(transport=emu.transport()),
    )  # fmt: skip
    assert llm.invoke([("system", DOCUMENT), ("human", "Q")]).content
    assert any("cannot open the cache registry" in r.getMessage() for r in caplog.records)
    assert corrupt.read_bytes().startswith(b"this is not a database")  # nothing was overwritten


def test_two_credentials_never_share_an_entry_in_redis(redis_url: str) -> None:
    emu = Emulator()
    import httpx

    def model(key: str) -> ChatGemini:
        return ChatGemini(
            api_key=key, base_url="http://emulator/v1beta", cache_registry=redis_url, cache_mode="always",
            http_client=httpx.Client(transport=emu.transport()),
        )  # fmt: skip

    prompt = [("system", DOCUMENT + "\nRedis credentials test."), ("human", "Q")]
    a, b = model("team-a-key"), model("team-b-key")
    name_a = a.invoke(prompt).response_metadata["cache"]["name"]
    name_b = b.invoke(prompt).response_metadata["cache"]["name"]
    assert name_a != name_b and emu.counters.caches_created == 2
    assert {e.name for e in a.cache_manager.registry.entries(a.cache_manager.namespace)} == {name_a}


async def test_async_cold_calls_share_one_cache_through_redis(redis_url: str) -> None:
    import asyncio

    import httpx

    emu = Emulator(latency=0.02)
    registry = f"{redis_url.rsplit('/', 1)[0]}/2"

    def worker() -> ChatGemini:  # two "processes": separate models, separate in-process locks
        transport = emu.transport()
        return ChatGemini(
            api_key="async-key", base_url="http://emulator/v1beta", cache_registry=registry, cache_mode="always",
            http_client=httpx.Client(transport=transport), http_async_client=httpx.AsyncClient(transport=transport),
        )  # fmt: skip

    a, b = worker(), worker()
    for model in (a, b):
        model.cache_manager.lease_poll = 0.01
    prompt = [("system", DOCUMENT + "\nAsync."), ("human", "Q?")]
    replies = await asyncio.gather(*(m.ainvoke(prompt) for m in (a, b) for _ in range(5)))
    assert emu.counters.caches_created == 1
    assert len({r.response_metadata["cache"]["name"] for r in replies}) == 1


class _CountingRedis(RedisRegistry):
    """The real Redis registry, counting the round trips the warm path makes."""

    def __init__(self, url: str) -> None:
        super().__init__(url, prefix=f"count-{uuid.uuid4().hex[:8]}")
        self.gets = self.touches = 0

    def get(self, namespace: str, key: str) -> CacheEntry | None:
        self.gets += 1
        return super().get(namespace, key)

    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        self.touches += 1
        super().touch(namespace, key, now=now, expire_at=expire_at)


def _model(emu: Emulator, registry: Any, **kwargs: Any) -> ChatGemini:
    return ChatGemini(
        api_key="warm-key", base_url="http://emulator/v1beta", cache_registry=registry, cache_mode="always",
        http_client=httpx.Client(transport=emu.transport()), **kwargs,
    )  # fmt: skip


def test_the_warm_path_does_not_ask_redis_on_every_request(redis_url: str) -> None:
    emu, registry = Emulator(), _CountingRedis(redis_url)
    llm = _model(emu, registry)
    prompt = [("system", DOCUMENT + "\nWarm path."), ("human", "Q?")]
    llm.invoke(prompt)  # creates and records the cache
    registry.gets = registry.touches = 0
    for _ in range(20):
        assert llm.invoke(prompt).response_metadata["cache"]["created"] is False
    assert registry.gets <= 1 and registry.touches <= 1  # within registry_cache_seconds: answered from memory
    assert emu.counters.caches_created == 1


def test_a_worker_with_a_stale_entry_recovers_onto_the_cache_another_worker_recreated(redis_url: str) -> None:
    emu = Emulator()
    registry = f"{redis_url.rsplit('/', 1)[0]}/3"
    a, b = _model(emu, registry), _model(emu, registry)
    prompt = [("system", DOCUMENT + "\nStale entry."), ("human", "Q?")]
    old = a.invoke(prompt).response_metadata["cache"]["name"]
    assert emu.delete_cached_content(old)
    new = b.invoke(prompt).response_metadata["cache"]  # b finds the cache gone and recreates it
    assert new["recovered"] is True and new["name"] != old
    reply = a.invoke(prompt).response_metadata["cache"]  # a still remembers `old` in memory
    assert reply["name"] == new["name"] and reply["recovered"] is True
    assert emu.counters.caches_created == 2  # a reused b's cache instead of making a third
