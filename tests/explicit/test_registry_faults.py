"""Registries under faults: a Redis outage and its end, a SQLite file deleted while in use, no home
directory, unwritable directories, passwords in URLs, and state that must not grow without bound."""

from __future__ import annotations

import json
import logging
import os
import pwd
import sqlite3
import stat
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.load import dumpd

from cache_integrations import ConfigurationError
from cache_integrations.explicit import CacheEntry, MemoryRegistry, SQLiteRegistry, default_registry_path
from cache_integrations.explicit.redis import RedisRegistry
from cache_integrations.explicit.registry import registry_from_spec
from cache_integrations.langchain import ChatGemini
from cache_integrations.testing import Emulator

from ._support import BASE_URL, RedisServer, TickingClock, chat_gemini, prompt

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
PASSWORD = "s3cr3t-pw"


def _name(reply: Any) -> str:
    return str(reply.response_metadata["cache"]["name"])


def _entry(key: str, name: str = "cachedContents/a", expire_at: float = 10_000.0) -> CacheEntry:
    return CacheEntry("ns", key, name, "gemini-2.5-flash", 5000, expire_at, 1000.0, 1000.0)


# -- 3. after a Redis outage, workers come back to Redis ----------------------------------------------------


def test_workers_return_to_redis_after_an_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        emu, ticks = Emulator(), TickingClock()

        def worker() -> ChatGemini:
            llm = chat_gemini(emu, cache_registry=server.url, cache_mode="always")
            llm.cache_manager.registry_clock = ticks
            return llm

        a, b = worker(), worker()
        assert _name(a.invoke(prompt("P0"))) == _name(b.invoke(prompt("P0")))  # shared: one cache
        server.stop()
        caplog.set_level(logging.INFO)
        outage = [_name(a.invoke(prompt("P1"))), _name(b.invoke(prompt("P1")))]  # calls go on, per process
        assert outage[0] != outage[1] and emu.counters.caches_created == 3
        assert len([r for r in caplog.records if "continuing without sharing" in r.getMessage()]) == 2
        server.start()
        ticks.advance(1.5)  # past the first re-probe backoff
        assert _name(a.invoke(prompt("P2"))) == _name(b.invoke(prompt("P2")))  # back on the shared registry
        assert emu.counters.caches_created == 4
        assert sum("reachable again" in r.getMessage() for r in caplog.records) == 2
        # what `a` created during the outage was recorded in Redis when it came back: a new worker reuses it
        assert _name(worker().invoke(prompt("P1"))) == outage[0] and emu.counters.caches_created == 4
    finally:
        server.stop()


class FlakyRegistry(MemoryRegistry):
    """A shared registry that can be switched off; counts the calls it refused."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0


def _flaky(name: str) -> Any:
    def method(self: FlakyRegistry, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            raise ConnectionError("registry unreachable")
        return getattr(MemoryRegistry, name)(self, *args, **kwargs)

    return method


for _method in ("get", "put", "touch", "forget", "entries", "note_sent", "min_tokens", "learn_min_tokens",
                "too_small", "mark_too_small", "acquire_lease", "release_lease"):  # fmt: skip
    setattr(FlakyRegistry, _method, _flaky(_method))


def test_the_registry_is_reprobed_with_a_doubling_backoff() -> None:
    emu, ticks, registry = Emulator(), TickingClock(), FlakyRegistry()
    llm = chat_gemini(emu, cache_registry=registry, cache_mode="always")
    manager = llm.cache_manager
    manager.registry_clock, manager.registry_cache_seconds = ticks, 0  # no warm-path memory: every call asks
    registry.down = True
    llm.invoke(prompt())
    llm.invoke(prompt())
    assert registry.refused == 1  # failed once, then answered per process without asking again
    schedule = []
    for step in (0.9, 0.2, 1.5, 0.6, 3.8, 0.3):  # probes due 1 s, then 2 s, then 4 s after the last failure
        ticks.advance(step)
        llm.invoke(prompt())
        schedule.append(registry.refused)
    assert schedule == [1, 2, 2, 3, 3, 4]
    registry.down = False
    ticks.advance(8.0)
    reply = llm.invoke(prompt())  # the probe succeeds: back on the shared registry
    assert [e.name for e in registry.entries()] == [_name(reply)]  # the cache made meanwhile is recorded there
    assert not manager._access.degraded and emu.counters.caches_created == 1


# -- 4. a SQLite registry file deleted while in use ------------------------------------------------------------


@pytest.mark.parametrize("deleted", ["file", "directory"])
def test_a_deleted_sqlite_file_is_recreated_and_shared_again(
    deleted: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry" / "registry.sqlite3"
    ticks = TickingClock()
    a, b = SQLiteRegistry(path, clock=ticks), SQLiteRegistry(path, clock=ticks)  # two workers with it open
    a.put(_entry("before"))
    if deleted == "file":
        path.unlink()  # the -wal and -shm of the deleted database stay behind
    else:
        for child in path.parent.iterdir():
            child.unlink()
        path.parent.rmdir()
    caplog.set_level(logging.WARNING)
    c = SQLiteRegistry(path, clock=ticks)  # a worker started after the deletion creates a new file
    c.put(_entry("new", "cachedContents/c"))
    a.put(_entry("lost", "cachedContents/lost"))  # `a` has not looked yet: this lands in the deleted file
    d = SQLiteRegistry(path, clock=ticks)
    assert d.get("ns", "new") is not None and d.get("ns", "lost") is None
    assert d._conn().execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ticks.advance(2.0)  # check_every: the old workers notice that the file at the path is not theirs
    a.put(_entry("after", "cachedContents/after"))
    assert b.get("ns", "after") is not None and c.get("ns", "after") is not None  # agreed again
    assert a.get("ns", "new") is not None and b.get("ns", "new") is not None
    warnings = [r.getMessage() for r in caplog.records if "deleted or replaced" in r.getMessage()]
    assert len(warnings) == 2 and all(str(path) in w for w in warnings)  # a and b, once each
    for registry in (a, b, c, d):
        registry.close()


def test_the_file_check_is_not_made_on_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = TickingClock()
    registry = SQLiteRegistry(tmp_path / "r.sqlite3", clock=ticks)
    stats: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k))
    for _ in range(50):
        registry.get("ns", "k")
    ticks.advance(2.0)
    registry.get("ns", "k")
    assert stats.count(str(tmp_path / "r.sqlite3")) == 1
    registry.close()


def test_two_workers_agree_on_one_cache_after_the_file_is_deleted(tmp_path: Path) -> None:
    path, ticks, emu = tmp_path / "shared.sqlite3", TickingClock(), Emulator()
    workers = []
    for _ in range(2):
        llm = chat_gemini(emu, cache_registry=SQLiteRegistry(path, clock=ticks), cache_mode="always")
        llm.cache_manager.registry_clock = ticks
        workers.append(llm)
    workers[0].invoke(prompt("P0"))
    path.unlink()
    ticks.advance(2.0)
    assert _name(workers[0].invoke(prompt("P1"))) == _name(workers[1].invoke(prompt("P1")))
    assert emu.counters.caches_created == 2


# -- 5. no home directory, unwritable directories ----------------------------------------------------------------


@pytest.fixture
def homeless(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An arbitrary-uid container: no HOME, no passwd entry, no XDG or CACHE_INTEGRATIONS_HOME; temp dir isolated."""
    for var in ("HOME", "CACHE_INTEGRATIONS_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)

    def no_passwd_entry(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_passwd_entry)
    with pytest.raises(RuntimeError):
        Path.home()  # exactly what ChatGemini() used to die of
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp / f"cache_integrations-{os.getuid()}"


def _gemini(emu: Emulator, **kwargs: Any) -> ChatGemini:
    import httpx

    return ChatGemini(api_key="k", base_url=BASE_URL, http_client=httpx.Client(transport=emu.transport()), **kwargs)


def test_no_home_directory_falls_back_to_a_private_temp_registry(
    homeless: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    emu = Emulator()
    llm = _gemini(emu, cache_mode="always")
    registry = llm.cache_manager.registry
    assert isinstance(registry, SQLiteRegistry) and registry.path == homeless / "registry.sqlite3"
    assert default_registry_path() == homeless / "registry.sqlite3"
    assert stat.S_IMODE(homeless.stat().st_mode) & 0o077 == 0  # other users cannot read or plant anything
    assert llm.invoke(prompt()).response_metadata["cache"]["created"] is True
    assert _gemini(emu).cache_manager.registry.entries()  # a second model (process) shares the same file
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no home directory" in warnings[0] and str(homeless) in warnings[0]


def test_xdg_cache_home_is_used_without_a_home_directory(
    homeless: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    caplog.set_level(logging.WARNING)
    registry = _gemini(Emulator()).cache_manager.registry
    assert isinstance(registry, SQLiteRegistry)
    assert registry.path == tmp_path / "xdg" / "cache_integrations" / "registry.sqlite3" and not caplog.records


def test_a_temp_dir_another_user_could_control_is_refused(homeless: Path, caplog: pytest.LogCaptureFixture) -> None:
    homeless.mkdir()
    homeless.chmod(0o777)  # world-writable: someone could have planted a database or a symlink
    caplog.set_level(logging.WARNING)
    assert isinstance(_gemini(Emulator()).cache_manager.registry, MemoryRegistry)
    assert len([r for r in caplog.records if "will not be shared" in r.getMessage()]) == 1


@pytest.mark.parametrize("how", ["read-only directory", "a file in the way", "the database is a directory"])
def test_an_unusable_cache_dir_falls_back_to_the_temp_dir(
    how: str, homeless: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if how == "read-only directory":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories; the other cases cover this path")
        home.chmod(0o500)
        monkeypatch.setenv("CACHE_INTEGRATIONS_HOME", str(home / "ci"))
    elif how == "a file in the way":
        (home / "ci").write_text("not a directory")
        monkeypatch.setenv("CACHE_INTEGRATIONS_HOME", str(home / "ci"))
    else:
        (home / "registry.sqlite3").mkdir()
        monkeypatch.setenv("CACHE_INTEGRATIONS_HOME", str(home))
    caplog.set_level(logging.WARNING)
    registry = _gemini(Emulator()).cache_manager.registry
    assert isinstance(registry, SQLiteRegistry) and registry.path == homeless / "registry.sqlite3"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot open the cache registry" in warnings[0]


def test_with_no_usable_directory_at_all_caches_stay_per_process(
    homeless: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    homeless.parent.rmdir()
    homeless.parent.write_text("the temp dir is not a directory")
    caplog.set_level(logging.WARNING)
    emu = Emulator()
    llm = _gemini(emu, cache_mode="always")
    assert isinstance(llm.cache_manager.registry, MemoryRegistry)
    assert llm.invoke(prompt()).response_metadata["cache"]["created"] is True
    assert len([r for r in caplog.records if "will not be shared" in r.getMessage()]) == 1


# -- 7. passwords in registry URLs ---------------------------------------------------------------------------------


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(getattr(exc, "__context__", None))


@pytest.mark.parametrize(
    "spec",
    [
        f"redis//:{PASSWORD}@127.0.0.1:6379/0",
        f"redis:/:{PASSWORD}@127.0.0.1:6379/0",
        f"reddis://admin:{PASSWORD}@cache.internal:6379/0",
        f"redis+tls://:{PASSWORD}@cache.internal/0",
        f"rediss//admin:p@ss/{PASSWORD}@cache.internal/0",
        f"cache.internal:6379/0?password={PASSWORD}",
    ],
)
def test_a_mistyped_registry_url_never_echoes_its_password(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry_from_spec(spec)
    assert PASSWORD not in _everything_said(info.value) and "***" in str(info.value)
    assert "cache_registry" in str(info.value)


def test_an_unparseable_redis_url_never_echoes_its_password() -> None:
    spec = f"redis://admin:{PASSWORD}@127.0.0.1:notaport/0"
    with pytest.raises(ConfigurationError) as info:
        registry_from_spec(spec)
    assert PASSWORD not in _everything_said(info.value) and "notaport" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("kind", ["refused", "wrong password", "password in the query"])
def test_a_redis_registry_that_fails_never_logs_its_password(
    kind: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    host_port = redis_url.removeprefix("redis://").rsplit("/", 1)[0]
    if kind == "refused":
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"redis://admin:{PASSWORD}@127.0.0.1:{s.getsockname()[1]}/0"
    elif kind == "wrong password":  # the server has no password: AUTH fails
        url = f"redis://admin:{PASSWORD}@{host_port}/0"
    else:
        url = f"redis://{host_port}/0?username=admin&password={PASSWORD}"
    caplog.set_level(logging.DEBUG)
    llm = _gemini(Emulator(), cache_registry=url, cache_mode="always")
    assert llm.invoke(prompt()).content  # the call itself never fails because of the registry
    registry = llm.cache_manager.registry
    assert PASSWORD not in repr(registry) and PASSWORD not in repr(llm)
    assert PASSWORD not in json.dumps(dumpd(llm))  # what LangChain tracers record of the model
    assert "continuing without sharing" in caplog.text and PASSWORD not in caplog.text
    with pytest.raises(redis.RedisError) as info:
        registry.get("ns", "k")
    assert PASSWORD not in registry.describe_error(info.value)
    quoting = ValueError(f"cannot use {url} (password {PASSWORD!r})")  # should a client library ever quote it
    assert PASSWORD not in registry.describe_error(quoting) and "***" in registry.describe_error(quoting)


# -- 8. bounded state ----------------------------------------------------------------------------------------------


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_sqlite_send_counts_are_capped_and_pruned_by_age(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    registry = SQLiteRegistry(path, max_sends=100)
    for i in range(1000):
        registry.note_sent("ns", f"k{i}", now=1000.0 + i, window=3600.0)
    assert _rows(path, "sends") <= 100 + 100 // 10
    assert registry.note_sent("ns", "k999", now=2000.0, window=3600.0) == 2  # the recent counts are kept
    assert registry.note_sent("ns", "k0", now=2000.0, window=3600.0) == 1  # the oldest were dropped
    registry.note_sent("ns", "late", now=2000.0 + 7200, window=3600.0)  # every other count is past its window
    assert _rows(path, "sends") == 1
    registry.close()


def test_sqlite_drops_expired_leases_and_long_dead_entries(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    registry = SQLiteRegistry(path)
    registry.put(_entry("dead", expire_at=1000.0))
    registry.put(_entry("alive", expire_at=100_000.0))
    assert registry.acquire_lease("ns", "crashed-creator", "worker-a", ttl=60.0, now=1000.0)
    registry.note_sent("ns", "k", now=1000.0, window=3600.0)
    registry.note_sent("ns", "k", now=1000.0 + 7200, window=3600.0)
    assert [e.key for e in registry.entries()] == ["alive"] and _rows(path, "leases") == 0
    registry.close()


def test_memory_send_counts_are_capped_and_pruned_by_age() -> None:
    registry = MemoryRegistry(max_sends=100)
    for i in range(1000):
        registry.note_sent("ns", f"k{i}", now=1000.0 + i, window=3600.0)
    assert len(registry._sends) == 100
    assert registry.note_sent("ns", "k999", now=2000.0, window=3600.0) == 2
    assert registry.note_sent("ns", "k0", now=2000.0, window=3600.0) == 1
    registry.note_sent("ns", "late", now=2000.0 + 7200, window=3600.0)
    assert list(registry._sends) == [("ns", "late")]


def test_redis_send_counts_expire_with_their_window(redis_url: str) -> None:
    registry = RedisRegistry(redis_url, prefix="bounded")
    registry.note_sent("ns", "k", now=0.0, window=30.0)
    assert 0 < registry._client.pttl("bounded:ns:sends:k") <= 30_000
    registry.close()


def test_per_prefix_locks_do_not_accumulate() -> None:
    emu = Emulator()
    llm = chat_gemini(emu, cache_mode="always")
    for i in range(5):
        llm.invoke(prompt(f"P{i}"))
    assert emu.counters.caches_created == 5 and len(llm.cache_manager._locks._locks) == 0


def test_model_reprs_never_show_a_registry_password() -> None:
    from cache_integrations.llama_index import Gemini

    url = f"redis://admin:{PASSWORD}@127.0.0.1:1/0"
    for model in (ChatGemini(api_key="k", cache_registry=url), Gemini(api_key="k", cache_registry=url)):
        assert PASSWORD not in repr(model) and PASSWORD not in str(model)


def test_the_per_process_memory_of_prefixes_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from cache_integrations.explicit import _access, manager

    monkeypatch.setattr(_access, "_HOT_LIMIT", 3)
    monkeypatch.setattr(manager, "_PER_PREFIX_LIMIT", 3)
    emu = Emulator()
    llm = chat_gemini(emu, cache_mode="always")
    for i in range(6):
        llm.invoke(prompt(f"P{i}"))
    inline = chat_gemini(emu, cache_mode="auto")
    for i in range(6):
        inline.invoke(prompt(f"I{i}"))
    assert len(llm.cache_manager._access._hot) == 3 and len(inline.cache_manager._implicit_hits) == 3
    assert emu.counters.caches_created == 6
