"""Holding answers until a burst has fully arrived, so "concurrent" is an event, not a race.

A real service sees a batch of N requests sent at once as N requests in flight together: none of them
can read a prefix another one writes, because none has completed. Over loopback HTTP the emulator
answers in about a millisecond, so whether request 20 arrives before request 1 is answered depends on
thread scheduling. ``Emulator.hold_answers(n)`` removes the race: the next ``n`` matching requests are
processed on arrival (cache lookups, routing, counters) but answered only once all ``n`` have arrived,
which is exactly "they were in flight together". The serving layers (ASGI app, httpx transport) wait on
the gate before they send anything. ``timeout`` is a safety net against a test that miscounts (the
gate then opens for everyone, and the test fails on what it asserts), never part of the model.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .faults import Endpoint

__all__ = ["AnswerGate"]


class AnswerGate:
    """Answers of ``expected`` requests are released together once the last of them has arrived."""

    def __init__(self, expected: int, *, endpoint: Endpoint | None = None, timeout: float = 30.0) -> None:
        if expected < 1:
            raise ValueError("hold_answers: n must be >= 1")
        if timeout <= 0:
            raise ValueError("hold_answers: timeout must be > 0 seconds")
        self.expected = expected
        self.endpoint: Endpoint | None = endpoint
        self.timeout = timeout
        self._arrived = 0
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def arrived(self) -> int:
        """How many of the held requests have arrived so far."""
        with self._lock:
            return self._arrived

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def matches(self, endpoint: Endpoint | None) -> bool:
        return self.endpoint is None or endpoint == self.endpoint

    def arrive(self) -> bool:
        """Count one held request in; True when it was the last (the gate is then open)."""
        with self._lock:
            self._arrived += 1
            last = self._arrived >= self.expected
        if last:
            self.open()
        return last

    def open(self) -> None:
        """Release every held answer (idempotent)."""
        with self._lock:
            self._open.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_release, future)

    def wait(self) -> None:
        """Block the calling thread until the gate opens (or the safety timeout passes, which opens it)."""
        if not self._open.wait(self.timeout):
            self.open()

    async def wait_async(self) -> None:
        """Await the gate without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._open.is_set():
                return
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self.open()


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
