"""Work a model call's caller need not wait for (miss diagnoses and their traces), done after the call.

The cache usage handlers book a call's tokens and money at once, on the caller's thread, and leave the miss
diagnosis (hashing the new messages, finding the conversation, judging the miss, writing the trace) to one
worker thread per process. The caller pays a few microseconds to queue it; the worker mostly runs while the
caller waits on the network. Jobs run one at a time in the order they were queued, so diagnoses keep the
order of the calls.

Everything that reads a diagnosis first calls `settle()`, which waits until the jobs queued so far are done:
``handler.diagnoses``, ``handler.calls``, the reports, ``CacheDiagnostics.diagnoses``. A job that fails is
logged and skipped. At interpreter exit the queue is drained (bounded), so traces are complete.

Fork-safe: no job is half-done across a fork (the fork waits for the running job and starts no other), and
the child starts its own worker with the jobs still queued in the parent's copy of its memory (they are the
child's history too). Asyncio-safe: nothing here touches an event loop; `settle()` blocks for at most the queued work.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["defer", "settle", "worker_cpu_seconds"]

logger = logging.getLogger("cache_integrations.diagnostics")

_EXIT_TIMEOUT = 10.0  # seconds the interpreter's exit waits for queued diagnoses


class _Worker:
    """A FIFO of jobs and the daemon thread that runs them (created on first use, again after a fork)."""

    def __init__(self) -> None:
        self._reset(())

    def _reset(self, jobs: tuple[Callable[[], None], ...]) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._running = threading.Lock()  # held while a job runs: a fork waits for it
        self._jobs: deque[Callable[[], None]] = deque(jobs)
        self._queued = len(jobs)
        self._done = 0
        self._cpu = 0.0  # CPU seconds the worker spent in jobs (for benchmarks: the work moved off the caller)
        self._forking = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._jobs.append(job)
            self._queued += 1
            if self._thread is None:
                self._start()
            self._cond.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cache-integrations-diagnostics", daemon=True)
        self._thread.start()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every job queued before this call has run (False: `timeout` passed first)."""
        if self._done >= self._queued or threading.current_thread() is self._thread:
            return True
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs) and not self._forking)
            # A job is taken, run and counted under `_running`, so at a fork each job is either still queued
            # (the child runs it) or done (in both processes' memory). No job starts once a fork is waiting.
            with self._running:
                with self._cond:
                    if self._forking or not self._jobs:
                        continue
                    job = self._jobs.popleft()
                started = time.thread_time()
                try:
                    job()
                except Exception:  # a diagnosis must never break the application; it is only lost
                    logger.warning("cache_integrations: a deferred cache diagnosis failed", exc_info=True)
                with self._cond:
                    self._cpu += time.thread_time() - started
                    self._done += 1
                    self._cond.notify_all()

    # -- fork ---------------------------------------------------------------------------------------

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
        self._running.acquire()  # the job running now ends first

    def after_fork_in_parent(self) -> None:
        self._running.release()
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        # Only this thread exists now; the parent's locks may be held by threads that are gone. The jobs
        # still queued are read without the lock (nothing else runs) and handed to a fresh worker.
        self._reset(tuple(self._jobs))
        if self._jobs:
            with self._cond:
                self._start()


_WORKER = _Worker()
os.register_at_fork(
    before=_WORKER.before_fork,
    after_in_parent=_WORKER.after_fork_in_parent,
    after_in_child=_WORKER.after_fork_in_child,
)
atexit.register(_WORKER.settle, _EXIT_TIMEOUT)


def defer(job: Callable[[], None]) -> None:
    """Run `job` on the worker thread, after every job queued before it."""
    _WORKER.submit(job)


def settle(timeout: float | None = None) -> bool:
    """Wait until every job queued so far has run; True unless `timeout` (seconds) passed first."""
    return _WORKER.settle(timeout)


def worker_cpu_seconds() -> float:
    """CPU seconds the worker thread has spent running jobs in this process (what the callers did not pay)."""
    return _WORKER._cpu
