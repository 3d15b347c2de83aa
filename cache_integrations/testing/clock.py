"""Clocks: the emulator reads time only through one of these, so tests can jump past TTLs instantly."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of time: ``time()`` is Unix wall time (timestamps, Gemini ``expireTime``),
    ``monotonic()`` measures TTLs of implicit prefix caches."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """Real time; the default."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A settable clock. Both readings move together, only when told to.

    The default start (2026-01-01T00:00:00Z) is fixed so ids, ``created`` stamps and RFC 3339 times in
    responses are reproducible run to run.
    """

    DEFAULT_START = 1_767_225_600.0

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._lock = threading.Lock()
        self._start = start
        self._now = start

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._now - self._start

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("FakeClock cannot go backwards")
        with self._lock:
            self._now += seconds

    def set(self, unix_time: float) -> None:
        """Jump to an absolute Unix time (not earlier than the current one)."""
        with self._lock:
            if unix_time < self._now:
                raise ValueError("FakeClock cannot go backwards")
            self._now = unix_time
