"""Pooled clients belong to the process and the event loop that made them.

Real ``os.fork()`` against real loopback servers: a child never writes on its parent's pooled
connection (it opens its own), a fork while another thread is building the pool does not deadlock
the child, and ``asyncio.run()`` per call does not leave a client and a socket behind per loop.
Waits on children are bounded by a timeout that fails the test; nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.langchain import ChatGLM
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers import GLMProvider
from cache_integrations.testing import Emulator

from .raw_server import RawRequest, raw_server, response

KEY = SecretStr("fork-test-key-0123456789")
CHILD_TIMEOUT = 60.0  # generous: only a hung (deadlocked) child ever reaches it

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _ask(question: str) -> ChatRequest:
    return ChatRequest("glm-4.7", (Message("user", question),))


def _run_in_child(work: Callable[[], Any]) -> tuple[int, int]:
    """Fork; the child runs `work` and writes its JSON result (or the error) to a pipe, then _exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not collected
        code = 1
        try:
            os.close(read_end)
            payload = json.dumps({"ok": work()})
            code = 0
        except BaseException as exc:
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            try:
                os.write(write_end, payload.encode()[:60000])
            finally:
                os._exit(code)
    os.close(write_end)
    return pid, read_end


def _wait_for_child(pid: int, read_end: int) -> Any:
    """The child's result; fails the test (and kills the child) if it does not finish in time."""
    give_up = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > give_up:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the forked child did not finish within {CHILD_TIMEOUT} s (deadlocked?)")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        result = json.loads(pipe.read() or b'{"error": "no output"}')
    assert "error" not in result, result.get("error")
    assert os.waitstatus_to_exitcode(status) == 0
    return result["ok"]


# ------------------------------------------------------------------------------------------ fork


def test_parent_and_child_calling_after_fork_each_get_their_own_answers() -> None:
    """Both processes call the emulator over loopback at the same time after the parent pooled a
    connection: every answer echoes the question its own process asked."""
    emu = Emulator()
    with emu.serve() as server:
        provider = GLMProvider(api_key=KEY, base_url=server.glm_base_url)
        assert "before the fork" in provider.chat(_ask("before the fork")).message.text  # pools a connection

        def child() -> list[str]:
            return [provider.chat(_ask(f"child question {i}")).message.text for i in range(15)]

        pid, pipe = _run_in_child(child)
        parent_answers = [provider.chat(_ask(f"parent question {i}")).message.text for i in range(15)]
        child_answers = _wait_for_child(pid, pipe)
    for i, text in enumerate(parent_answers):
        assert f"parent question {i}" in text
    for i, text in enumerate(child_answers):
        assert f"child question {i}" in text


def _echo(conn: socket.socket, request: RawRequest) -> bool:
    question = json.loads(request.body)["messages"][-1]["content"]
    body = {
        "id": "r",
        "model": "glm-4.7",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": question}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    conn.sendall(response(200, json.dumps(body).encode()))
    return True


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone() -> None:
    """Deterministic: the server sees which TCP connection (client port) carried each request."""
    with raw_server(_echo) as server:
        provider = GLMProvider(api_key=KEY, base_url=server.url)
        assert provider.chat(_ask("parent 1")).message.text == "parent 1"

        pid, pipe = _run_in_child(lambda: provider.chat(_ask("child 1")).message.text)
        assert _wait_for_child(pid, pipe) == "child 1"
        assert provider.chat(_ask("parent 2")).message.text == "parent 2"
    ports = {json.loads(r.body)["messages"][-1]["content"]: r.peer_port for r in server.requests}
    assert ports["parent 1"] == ports["parent 2"]  # the parent's pooled connection survived the fork
    assert ports["child 1"] != ports["parent 1"]  # the child never wrote on it


def test_fork_while_another_thread_builds_the_pool_does_not_deadlock_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread is mid-call, holding the provider's lock while it builds the pooled client, when the
    process forks: the child's own call must not wait for a lock no thread of its own holds."""
    parent = os.getpid()
    entered, release = threading.Event(), threading.Event()
    build = GLMProvider._new_sync_client

    def slow_build(self: GLMProvider) -> httpx.Client:
        if os.getpid() == parent:
            entered.set()
            release.wait(CHILD_TIMEOUT)
        return build(self)

    monkeypatch.setattr(GLMProvider, "_new_sync_client", slow_build)
    emu = Emulator()
    with emu.serve() as server:
        provider = GLMProvider(api_key=KEY, base_url=server.glm_base_url)
        answers: list[str] = []
        caller = threading.Thread(target=lambda: answers.append(provider.chat(_ask("from the thread")).message.text))
        caller.start()
        assert entered.wait(CHILD_TIMEOUT)
        try:
            pid, pipe = _run_in_child(lambda: provider.chat(_ask("from the child")).message.text)
        finally:
            release.set()
        child_answer = _wait_for_child(pid, pipe)
        caller.join(CHILD_TIMEOUT)
    assert "from the child" in child_answer
    assert answers and "from the thread" in answers[0]


# ----------------------------------------------------------------------------------- event loops


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_asyncio_run_per_call_does_not_leak_a_client_per_loop() -> None:
    emu = Emulator()
    with emu.serve() as server:
        llm = ChatGLM(model="glm-4.7", api_key=KEY, base_url=server.glm_base_url)
        asyncio.run(llm.ainvoke("warm up"))
        gc.collect()
        before = _open_fds()
        for i in range(200):
            asyncio.run(llm.ainvoke(f"question {i}"))
        gc.collect()
        after = _open_fds()
        assert after - before <= 10, f"{after - before} file descriptors leaked over 200 asyncio.run() calls"
        pool = llm.client._pool  # type: ignore[attr-defined]
        assert pool.async_clients == 0  # each loop's client was closed with its loop, not left to the GC


def test_a_loop_closed_without_shutting_down_its_generators_is_swept_on_the_next_call() -> None:
    emu = Emulator()
    with emu.serve() as server:
        provider = GLMProvider(api_key=KEY, base_url=server.glm_base_url)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(provider.achat(_ask("first loop")))
        loop.close()  # no shutdown_asyncgens(): the sentinel never ran
        assert provider._pool.async_clients == 1
        asyncio.run(provider.achat(_ask("second loop")))
        assert provider._pool.async_clients == 0  # swept, and the second loop's closed with it
