"""After ``os.fork()`` the child uses connections, locks and a lease identity of its own.

Each test forks for real while another thread of the parent is inside the registry and the manager
(holding their locks), as a pre-fork server or a multiprocessing pool would; the child reports back
over a pipe and always leaves through ``os._exit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from cache_integrations.explicit import MemoryRegistry, SQLiteRegistry
from cache_integrations.explicit.redis import RedisRegistry
from cache_integrations.langchain import ChatGemini
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.testing import Emulator

from ._support import DOC, SYSTEM, prompt

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX"),
    pytest.mark.block_network(allowed_hosts=["127.0.0.1"]),
]
_CHILD_DEADLINE = 60.0  # a child that has not finished by then is stuck on an inherited lock


def in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` in a forked child and return what it reported."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process forked" (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            report = body()
            code = 0
        except BaseException as exc:
            report = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            try:
                os.write(write, json.dumps(report).encode())
            finally:
                os._exit(code)
    os.close(write)
    deadline = time.monotonic() + _CHILD_DEADLINE
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            pytest.fail("the forked child hung: it waited on a lock inherited from the parent")
        time.sleep(0.01)
    with os.fdopen(read, "rb") as pipe:
        report: dict[str, Any] = json.loads(pipe.read() or b'{"error": "no report"}')
    assert "error" not in report, report["error"]
    return report


@contextmanager
def held_by_another_thread(*locks: AbstractContextManager[Any]) -> Iterator[None]:
    """Another thread of the parent holds `locks` for the duration (so they are held at fork time)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        yield
    finally:
        release.set()
        thread.join()


def _key(llm: ChatGemini, tag: str) -> str:
    request = ChatRequest(llm.model, (Message("system", f"{SYSTEM}{tag}\n{DOC}"), Message("user", "x")))
    key = llm.cache_manager.prefix_key(request)
    assert key is not None
    return key


def _name(reply: Any) -> str:
    return str(reply.response_metadata["cache"]["name"])


def test_a_forked_worker_opens_its_own_sqlite_connection_and_never_waits_on_inherited_locks(tmp_path: Path) -> None:
    emu = Emulator()
    with emu.serve() as server:
        registry = SQLiteRegistry(tmp_path / "r.sqlite3")
        llm = ChatGemini(api_key="fork-key", base_url=server.gemini_base_url, cache_registry=registry,
                         cache_mode="always")  # fmt: skip
        manager = llm.cache_manager
        first = _name(llm.invoke(prompt("P0")))
        inherited_db, parent_owner = registry._db, manager._owner

        def child() -> dict[str, Any]:
            return {
                "p1": _name(llm.invoke(prompt("P1"))),  # creates: needs every lock the other thread holds
                "p0": _name(llm.invoke(prompt("P0"))),  # the parent's cache, through the shared file
                "own_connection": registry._db is not None and registry._db is not inherited_db,
                "own_owner": manager._owner != parent_owner,
            }

        locks = (registry._lock, manager._access._hot_lock, manager._locks.sync(_key(llm, "P1")),
                 manager._unbooked_lock, manager._unsure_lock)  # fmt: skip
        with held_by_another_thread(*locks):
            report = in_child(child)
        assert report["own_connection"] and report["own_owner"] and report["p0"] == first
        entry = registry.get(manager.namespace, _key(llm, "P1"))  # the child's cache, seen by the parent
        assert entry is not None and entry.name == report["p1"] and emu.counters.caches_created == 2
        assert registry._conn().execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_forked_worker_does_not_inherit_the_parents_lease(tmp_path: Path) -> None:
    emu = Emulator()
    with emu.serve() as server:
        registry = SQLiteRegistry(tmp_path / "r.sqlite3")
        llm = ChatGemini(api_key="fork-key", base_url=server.gemini_base_url, cache_registry=registry,
                         cache_mode="always")  # fmt: skip
        manager = llm.cache_manager
        # the parent is creating the cache for P2 (it holds the lease) when it forks
        assert registry.acquire_lease(manager.namespace, _key(llm, "P2"), manager._owner, ttl=60, now=time.time())

        def child() -> dict[str, Any]:
            manager.lease_wait = 0.0  # do not wait for the parent: send inline
            reply = llm.invoke(prompt("P2"))
            return {"cached": "cache" in reply.response_metadata, "content": bool(reply.content)}

        report = in_child(child)
        assert report == {"cached": False, "content": True}  # the lease is the parent's, not the child's
        assert emu.counters.caches_created == 0


def test_a_forked_child_never_waits_on_a_memory_registry_lock() -> None:
    registry = MemoryRegistry()

    def child() -> dict[str, Any]:
        registry.learn_min_tokens("ns", "gemini-2.5-flash", 1024)
        return {"min": registry.min_tokens("ns", "gemini-2.5-flash")}

    with held_by_another_thread(registry._lock):
        assert in_child(child) == {"min": 1024}


def test_a_forked_child_gets_redis_clients_of_its_own(redis_url: str) -> None:
    registry = RedisRegistry(redis_url, prefix=f"fork-{os.getpid()}")
    registry.learn_min_tokens("ns", "gemini-2.5-flash", 2048)  # the parent's pool has a connection now
    inherited = registry._client

    def child() -> dict[str, Any]:
        registry.mark_too_small("ns", "k", 12)
        return {"own_client": registry._client is not inherited, "min": registry.min_tokens("ns", "gemini-2.5-flash")}

    assert in_child(child) == {"own_client": True, "min": 2048}
    assert registry.too_small("ns", "k") == 12  # the parent's connection still works after the child left
    registry.close()


def test_a_forked_worker_uploads_without_waiting_on_the_parents_upload_locks(tmp_path: Path) -> None:
    from cache_integrations.explicit.files import content_key
    from tests.media import samples

    pdf = samples.pdf(3)
    emu = Emulator()
    with emu.serve() as server:
        registry = SQLiteRegistry(tmp_path / "r.sqlite3")
        llm = ChatGemini(api_key="fork-key", base_url=server.gemini_base_url, cache_registry=registry)
        files = llm.media.uploader
        key = content_key(hashlib.sha256(pdf).hexdigest(), "application/pdf")

        def child() -> dict[str, Any]:
            return {"name": llm.upload_file(pdf, "application/pdf").name}

        with held_by_another_thread(files._memo_lock, files._locks.sync(key), registry._lock):  # type: ignore[attr-defined]
            report = in_child(child)
        assert report["name"] in emu.files.names() and emu.counters.files_uploaded == 1
        assert llm.upload_file(pdf, "application/pdf").name == report["name"], "the child's upload, shared"
