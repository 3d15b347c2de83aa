"""How the manager talks to its registry: never failing a user's call, coming back after an outage,
and answering the warm path from memory.

* degrade: a registry call that raises is answered by a per-process `MemoryRegistry` instead, with
  one warning per outage;
* re-probe: while degraded, the shared registry is tried again after a backoff (1 s, doubling up to
  60 s, on an injectable monotonic clock), by one call at a time; when it answers, the caches made
  meanwhile are recorded in it (unless it already knows one for the prefix) and every call returns to
  it, so an outage costs duplicates only while it lasts;
* warm path: entries looked up (or written) in the last `cache_seconds` are answered from memory and
  their use is counted at most once per that interval; a networked registry would otherwise pay a
  round trip to look an entry up and another to count its use on every request. A cache another
  worker replaced meanwhile costs one transparent recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import _forksafe
from ._base import CacheEntry, CacheRegistry
from .registry import MemoryRegistry

__all__ = ["MISS", "RegistryAccess"]

logger = logging.getLogger(__name__)

MISS = object()
FIRST_PROBE_AFTER = 1.0
"""Seconds after a registry failure before the shared registry is tried again (then doubling)."""
MAX_PROBE_INTERVAL = 60.0
_HOT_LIMIT = 4096  # prefixes remembered for the warm path; the least recently checked go first


@dataclass(frozen=True, slots=True)
class _Hot:
    """A registry entry this process looked up or wrote recently (seconds of the access's clock)."""

    entry: CacheEntry
    checked: float
    touched: float


class RegistryAccess:
    """The manager's registry calls: `call(method, ...)` / `await acall(method, ...)`."""

    def __init__(
        self, registry: CacheRegistry, *, cache_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = registry
        self.cache_seconds = float(cache_seconds)
        self.clock = clock
        """Monotonic seconds: the warm-path memory's age and the re-probe backoff."""
        self.fallback = MemoryRegistry()
        self._down = False
        self._probe_at = 0.0
        self._backoff = FIRST_PROBE_AFTER
        self._state_lock = threading.Lock()
        self._hot: dict[str, _Hot] = {}
        self._hot_lock = threading.Lock()
        _forksafe.register(self)

    def _after_fork(self) -> None:
        self._state_lock = threading.Lock()
        self._hot_lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        """True while calls are answered per process because the shared registry failed."""
        return self._down

    # -- which registry answers -------------------------------------------------------------------

    def _target(self) -> tuple[CacheRegistry, bool]:
        """Who answers, and whether this call probes a registry that is down (one caller claims each
        probe): the shared registry, unless it is down and not due for a probe."""
        if not self._down:
            return self.registry, False
        with self._state_lock:
            if not self._down:
                return self.registry, False
            now = self.clock()
            if now >= self._probe_at:
                self._probe_at = now + self._backoff  # no other caller probes meanwhile
                return self.registry, True
        return self.fallback, False

    def _failed(self, exc: Exception, *, probe: bool = False) -> None:
        with self._state_lock:
            first = not self._down
            if first:
                self._backoff = FIRST_PROBE_AFTER
                self._down = True
            elif probe:
                self._backoff = min(self._backoff * 2, MAX_PROBE_INTERVAL)
            else:  # another call that was already under way when the registry went down
                return
            self._probe_at = self.clock() + self._backoff
        if first:
            logger.warning(
                "cache registry %r failed (%s); continuing without sharing caches across processes, "
                "retrying it in %.0f s",
                self.registry,
                self.registry.describe_error(exc),
                self._backoff,
            )
        else:
            logger.debug("cache registry %r still unavailable (%s)", self.registry, self.registry.describe_error(exc))

    def _answered(self) -> None:
        """The shared registry answered: if it had been down, go back to it."""
        if not self._down:
            return
        with self._state_lock:
            if not self._down:
                return
            self._down = False
            stranded, self.fallback = self.fallback, MemoryRegistry()
        migrated = 0
        try:
            for entry in stranded.entries():
                if self.registry.get(entry.namespace, entry.key) is None:
                    self.registry.put(entry)
                    migrated += 1
        except Exception as exc:
            self.fallback = stranded  # keep what this process knows for the next attempt
            self._failed(exc, probe=True)
            return
        logger.info(
            "cache registry %r is reachable again; sharing caches across processes again "
            "(%d cache(s) created meanwhile recorded in it)",
            self.registry,
            migrated,
        )

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        hit = self._hot_answer(method, args)
        if hit is not MISS:
            return hit
        registry, probe = self._target()
        try:
            result = getattr(registry, method)(*args, **kwargs)
        except Exception as exc:
            if registry is not self.registry:
                raise
            self._failed(exc, probe=probe)
            result = getattr(self.fallback, method)(*args, **kwargs)
        else:
            if registry is self.registry:
                self._answered()
        self._hot_note(method, args, result)
        return result

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`call` for the async path: a registry's ``a<method>`` when it has one (Redis)."""
        if getattr(self.registry, "a" + method, None) is None:
            return self.call(method, *args, **kwargs)
        hit = self._hot_answer(method, args)
        if hit is not MISS:
            return hit
        registry, probe = self._target()
        try:
            result = await getattr(registry, "a" + method)(*args, **kwargs)
        except Exception as exc:
            if registry is not self.registry:
                raise
            self._failed(exc, probe=probe)
            result = await getattr(self.fallback, "a" + method)(*args, **kwargs)
        else:
            if registry is self.registry:
                self._answered()
        self._hot_note(method, args, result)
        return result

    # -- warm-path memory ---------------------------------------------------------------------------

    def _hot_answer(self, method: str, args: tuple[Any, ...]) -> Any:
        if method not in ("get", "touch") or self.cache_seconds <= 0:
            return MISS
        namespace, key = args[0], args[1]
        with self._hot_lock:
            hot = self._hot.get(key)
        if hot is None or hot.entry.namespace != namespace:
            return MISS
        now = self.clock()
        if method == "get":
            return hot.entry if now - hot.checked < self.cache_seconds else MISS
        return None if now - hot.touched < self.cache_seconds else MISS

    def _hot_note(self, method: str, args: tuple[Any, ...], result: Any) -> None:
        now = self.clock()
        with self._hot_lock:
            if method == "get":
                if isinstance(result, CacheEntry):
                    old = self._hot.pop(result.key, None)
                    self._hot[result.key] = _Hot(result, now, old.touched if old else -float("inf"))
                else:
                    self._hot.pop(args[1], None)
            elif method == "put":
                self._hot.pop(args[0].key, None)
                self._hot[args[0].key] = _Hot(args[0], now, now)
            elif method == "forget":
                self._hot.pop(args[1], None)
            elif method == "touch" and args[1] in self._hot:
                self._hot[args[1]] = replace(self._hot[args[1]], touched=now)
            while len(self._hot) > _HOT_LIMIT:
                del self._hot[next(iter(self._hot))]
