"""Diagnoses run after the call, on one worker thread per process (`cache_integrations._deferred`): in order,
waited for by every reader, never lost to a failing job, and consistent across fork()."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from cache_integrations._deferred import defer, settle
from cache_integrations.accounting import CacheLedger
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM
from cache_integrations.testing import Emulator
from cache_integrations.usage import Usage

SYSTEM = "You answer from the handbook. " * 60


def _llm(emu: Emulator) -> ChatGLM:
    transport = emu.transport()
    return ChatGLM(api_key="k", base_url="http://emulator/api/paas/v4", http_client=httpx.Client(transport=transport))


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event the worker waits on (holding back every job queued after it); always opened at the end, so a
    failing test never leaves the process's worker blocked."""
    event = threading.Event()
    defer(event.wait)
    yield event
    event.set()


def test_jobs_run_in_order_and_settle_waits_for_them(gate: threading.Event) -> None:
    seen: list[int] = []
    for i in range(50):
        defer(lambda i=i: seen.append(i))
    assert settle(timeout=0.01) is False  # the first job is still waiting for its gate
    assert seen == []
    gate.set()
    assert settle() is True
    assert seen == list(range(50))


def test_a_failing_job_is_logged_and_the_next_ones_still_run(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("broken diagnosis")

    with caplog.at_level(logging.WARNING, logger="cache_integrations.diagnostics"):
        defer(boom)
        defer(lambda: seen.append("after"))
        assert settle()
    assert seen == ["after"]
    assert any("deferred cache diagnosis failed" in r.getMessage() for r in caplog.records)


def test_the_ledger_books_at_once_and_attaches_the_diagnosis_later(gate: threading.Event) -> None:
    ledger = CacheLedger()
    rec = ledger.record(Usage(input_tokens=10, output_tokens=1), model="glm-4.7", diagnose=lambda: "diagnosed")
    assert ledger.total.calls == 1 and rec.diagnosis is None  # booked before the diagnosis exists
    gate.set()
    assert [c.diagnosis for c in ledger.calls] == ["diagnosed"]  # reading the calls waits for it


def test_the_handler_s_totals_are_immediate_and_its_diagnoses_complete_when_read(gate: threading.Event) -> None:
    emu = Emulator()
    llm, handler = _llm(emu), CacheUsageCallbackHandler()  # the worker is held: the calls must not wait for it
    for q in range(3):
        llm.invoke([SystemMessage(SYSTEM), HumanMessage(f"q{q}?")], config={"callbacks": [handler]})
    assert handler.total.calls == 3
    assert handler.flush(timeout=0.01) is False
    gate.set()
    assert [d.call_index for d in handler.diagnoses] == [0, 1, 2]
    assert handler.diagnoses[2].cause is None and handler.diagnoses[2].reported_cached_tokens > 0


def test_eight_threads_get_one_diagnosis_per_call() -> None:
    emu = Emulator()
    llm, handler = _llm(emu), CacheUsageCallbackHandler()

    def work(t: int) -> None:
        for q in range(10):
            llm.invoke(
                [SystemMessage(f"thread {t}: {SYSTEM}"), HumanMessage(f"q{q}?")],
                config={"callbacks": [handler], "metadata": {"thread_id": f"t{t}"}},
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    diagnoses = handler.diagnoses
    assert len(diagnoses) == 80
    by_conversation: dict[str, list[int]] = {}
    for d in diagnoses:
        by_conversation.setdefault(d.conversation, []).append(d.call_index)
    assert sorted(by_conversation) == [f"t{t}" for t in range(8)]
    assert all(indexes == list(range(10)) for indexes in by_conversation.values())


def test_a_fork_waits_for_the_running_job_and_the_child_runs_what_was_queued() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[Any] = []

    def running() -> None:
        started.set()
        release.wait()
        seen.append("running")

    defer(running)
    defer(lambda: seen.append(os.getpid()))
    if not started.wait(5):
        release.set()
        pytest.fail("the worker did not start the job")
    # The fork below blocks in its before-hook until the running job ends; the timer ends it well after the fork
    # has reached that hook (the second job is then still queued, in both processes).
    threading.Timer(0.2, release.set).start()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        ok = settle(timeout=5) and seen == ["running", os.getpid()]
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert settle(timeout=5)
    assert seen == ["running", os.getpid()]
