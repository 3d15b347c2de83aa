"""Creating a cache: single-flight across processes, and never a duplicate after a lost answer.

A prefix's cache is created by one worker at a time: threads of a process queue on a per-prefix
lock, processes sharing a registry on a lease (a creator that dies holds it for `lease_ttl` at most);
the others wait for the entry to appear and use it.

Creation is not idempotent (each ``cachedContents`` POST makes, and bills, a new cache), so the
transport never retries one that may have reached Gemini. When the answer is lost after the request
may have been processed (a read timeout, a reset, a 5xx, an unreadable body), the caches are listed
and the one whose display name carries this prefix's key is adopted; only when there is none is the
creation sent again (once). A failure whose outcome cannot be verified (the listing fails too) is
not retried, and the prefix's next creation in this process starts with the lookup.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import (
    CachedContentNotSupportedError,
    CachedContentTooSmallError,
    ExplicitCachingUnsupportedError,
    FileNotActiveError,
    ProviderConnectionError,
    ProviderError,
    UploadedFileNotFoundError,
)
from ..messages import ChatRequest
from ._access import RegistryAccess
from ._base import CacheEntry, one_line
from ._models import unsupported_message
from ._types import (
    DISPLAY_PREFIX,
    SAFETY_SECONDS,
    CachedResource,
    CacheMode,
    ExplicitCacheClient,
    KeyedLocks,
    Plan,
    Ticket,
    local_expiry,
)

__all__ = ["CacheCreation"]

logger = logging.getLogger(__name__)

CreationError = ProviderError | ProviderConnectionError
_ATTEMPTS = 2  # a creation lost in flight and not found is sent once more
_UNSURE_LIMIT = 1024  # prefixes with an unverified creation remembered per process


def ambiguous(exc: CreationError) -> bool:
    """Whether a failed creation may nevertheless have created the cache on the provider's side."""
    if isinstance(exc, ProviderConnectionError):
        return exc.maybe_sent
    return exc.status_code >= 500 or exc.status_code < 400  # a 5xx, or a 2xx whose body we could not read


class CacheCreation:
    """The manager's creation flow (a mixin of `ExplicitCacheManager`, which sets these attributes)."""

    client: ExplicitCacheClient
    namespace: str
    mode: CacheMode
    ttl: float
    clock: Callable[[], float]
    lease_ttl: float
    lease_wait: float
    lease_poll: float
    _owner: str
    _locks: KeyedLocks
    _access: RegistryAccess
    _unsure: dict[str, None]
    _unsure_lock: threading.Lock
    _learn_unsupported: Callable[[str], None]  # from ModelRules, the manager's other mixin

    def _init_creation(self) -> None:
        """Per-process state of the flow (called at construction and in a forked child)."""
        self._unsure = {}  # prefixes whose last creation may have succeeded unseen
        self._unsure_lock = threading.Lock()

    def _mark_unsure(self, plan: Plan, unsure: bool) -> None:
        with self._unsure_lock:
            self._unsure.pop(plan.key, None)
            if unsure:
                self._unsure[plan.key] = None
                while len(self._unsure) > _UNSURE_LIMIT:
                    del self._unsure[next(iter(self._unsure))]

    def _is_unsure(self, plan: Plan) -> bool:
        with self._unsure_lock:
            return plan.key in self._unsure

    def _reg(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._access.call(method, *args, **kwargs)

    async def _areg(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._access.acall(method, *args, **kwargs)

    def _display_name(self, plan: Plan) -> str:
        return f"{DISPLAY_PREFIX}{plan.key[:40]}"

    def _live(self, plan: Plan, now: float) -> CacheEntry | None:
        entry: CacheEntry | None = self._reg("get", self.namespace, plan.key)
        return self._usable(plan, entry, now)

    async def _alive(self, plan: Plan, now: float) -> CacheEntry | None:
        entry: CacheEntry | None = await self._areg("get", self.namespace, plan.key)
        return self._usable(plan, entry, now)

    def _usable(self, plan: Plan, entry: CacheEntry | None, now: float) -> CacheEntry | None:
        if entry is None:
            return None
        if entry.expire_at - now <= SAFETY_SECONDS:
            self._reg("forget", self.namespace, plan.key, name=entry.name)
            return None
        return entry

    # -- outcomes ---------------------------------------------------------------------------------

    def _new_entry(self, plan: Plan, resource: CachedResource, now: float) -> CacheEntry:
        return CacheEntry(
            namespace=self.namespace,
            key=plan.key,
            name=resource.name,
            model=plan.model,
            tokens=resource.total_token_count,
            expire_at=local_expiry(resource, now),
            created_at=now,
            last_used=now,
            uses=0,
            pinned=plan.pinned,
        )

    def _created(self, plan: Plan, resource: CachedResource, now: float) -> Ticket:
        """Record a new cache; the creating call reports its tokens as writes and its storage."""
        entry = self._new_entry(plan, resource, now)
        self._reg("put", entry)
        hours = (entry.expire_at - now) / 3600
        return Ticket(entry, created=True, written_tokens=entry.tokens, storage_token_hours=entry.tokens * hours)

    def _learn_too_small(self, plan: Plan, exc: CachedContentTooSmallError) -> None:
        self._reg("mark_too_small", self.namespace, plan.key, exc.total_token_count or 0)
        if exc.min_total_token_count:
            self._reg("learn_min_tokens", self.namespace, plan.model, exc.min_total_token_count)
        logger.info(
            "prefix %s is below %s's minimum cache size (%s < %s tokens): sending it inline",
            plan.key[:12],
            plan.model,
            exc.total_token_count,
            exc.min_total_token_count,
        )

    def _creation_failed(self, plan: Plan, exc: CreationError) -> None:
        """A refused creation: too small, or a model without explicit caching, is learned and sent inline
        (raised for a pin); a file of the prefix that is gone or not ready is raised, so the caller can
        upload it again and retry; any other error is raised when the caller demanded a cache, else logged
        and the request goes inline."""
        if isinstance(exc, CachedContentTooSmallError):
            self._learn_too_small(plan, exc)
            if plan.pinned:
                raise exc
            return
        if isinstance(exc, CachedContentNotSupportedError):
            self._learn_unsupported(plan.model)
            logger.warning(
                "Gemini refused an explicit cache for %s (%s); sending its requests inline from now on",
                plan.model,
                exc.message,
            )
            if plan.pinned:
                raise ExplicitCachingUnsupportedError(
                    unsupported_message(plan.model, refused=True), model=plan.model
                ) from exc
            return
        if isinstance(exc, (UploadedFileNotFoundError, FileNotActiveError)):
            raise exc
        if plan.pinned or self.mode == "always":
            raise exc
        logger.warning("could not create a cache for prefix %s (%s); sending it inline", plan.key[:12], one_line(exc))

    def _gave_up_waiting(self, plan: Plan) -> None:
        logger.warning(
            "waited %.0f s for another worker to create the cache for prefix %s; sending inline",
            self.lease_wait,
            plan.key[:12],
        )

    def _lost(
        self,
        plan: Plan,
        exc: CreationError,
        found: CachedResource | None,
        lookup_error: CreationError | None,
        last: bool,
    ) -> CachedResource | None:
        """After an ambiguous failure: the cache it made (if the listing shows one), else None to send
        the creation again, or raise / go inline (`_creation_failed`) when that is not safe or allowed."""
        key = plan.key[:12]
        self._mark_unsure(plan, lookup_error is not None)
        if lookup_error is not None:
            logger.warning(
                "creating the cache for prefix %s may have succeeded (%s) and the caches could not be listed "
                "to find out (%s); not creating it again",
                key,
                one_line(exc),
                one_line(lookup_error),
            )
        elif found is not None:
            logger.warning(
                "the answer to creating the cache for prefix %s was lost (%s); found it by its display name: %s",
                key,
                one_line(exc),
                found.name,
            )
            return found
        elif not last:
            logger.warning(
                "creating the cache for prefix %s failed (%s) and no such cache exists; creating it again",
                key,
                one_line(exc),
            )
            return None
        self._creation_failed(plan, exc)
        return None

    def _resolved(self, plan: Plan, found: CachedResource | None, now: float) -> Ticket | None:
        """The lookup after an unverified creation answered: adopt what it made, or create anew."""
        self._mark_unsure(plan, False)
        if found is None:
            return None
        logger.warning("the cache for prefix %s had been created unseen: using %s", plan.key[:12], found.name)
        return self._created(plan, found, now)

    # -- sync ---------------------------------------------------------------------------------------

    def _create(self, plan: Plan, request: ChatRequest, layout: bool) -> Ticket | None:
        with self._locks.sync(plan.key):  # threads of this process queue here
            deadline = time.monotonic() + self.lease_wait
            while True:
                now = self.clock()
                entry = self._live(plan, now)
                if entry is not None:  # another thread or process created it meanwhile
                    return Ticket(entry)
                if self._reg("too_small", self.namespace, plan.key) is not None:
                    return None
                if self._reg("acquire_lease", self.namespace, plan.key, self._owner, ttl=self.lease_ttl, now=now):
                    try:
                        return self._create_leased(plan, request, layout)
                    finally:
                        self._reg("release_lease", self.namespace, plan.key, self._owner)
                if time.monotonic() >= deadline:
                    self._gave_up_waiting(plan)
                    return None
                time.sleep(self.lease_poll)

    def _find_created(self, plan: Plan) -> CachedResource | None:
        name = self._display_name(plan)
        return max(
            (c for c in self.client.list_cached_contents() if c.display_name == name),
            key=lambda c: c.expire_time,
            default=None,
        )

    def _create_leased(self, plan: Plan, request: ChatRequest, layout: bool) -> Ticket | None:
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:  # recorded between our last look and the lease
            return Ticket(entry)
        if self._is_unsure(plan):  # an earlier creation may have succeeded unseen: look before creating
            try:
                found = self._find_created(plan)
            except (ProviderError, ProviderConnectionError) as err:
                self._creation_failed(plan, err)
                return None
            if (ticket := self._resolved(plan, found, now)) is not None:
                return ticket
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                resource = self.client.create_cached_content(
                    request,
                    cached_messages=plan.cached_messages,
                    ttl_seconds=self.ttl,
                    display_name=self._display_name(plan),
                    layout=layout,
                )
                break
            except (ProviderError, ProviderConnectionError) as exc:
                if not ambiguous(exc):
                    self._creation_failed(plan, exc)
                    return None
                found, lookup_error = None, None
                try:
                    found = self._find_created(plan)
                except (ProviderError, ProviderConnectionError) as err:
                    lookup_error = err
                adopted = self._lost(plan, exc, found, lookup_error, attempt == _ATTEMPTS)
                if adopted is not None:
                    resource = adopted
                    break
                if lookup_error is not None or attempt == _ATTEMPTS:
                    return None
        return self._created(plan, resource, now)

    # -- async (the same decisions; only the I/O awaits) -------------------------------------------

    async def _acreate(self, plan: Plan, request: ChatRequest, layout: bool) -> Ticket | None:
        async with self._locks.aio(plan.key):
            deadline = time.monotonic() + self.lease_wait
            while True:
                now = self.clock()
                entry = await self._alive(plan, now)
                if entry is not None:
                    return Ticket(entry)
                if self._reg("too_small", self.namespace, plan.key) is not None:
                    return None
                owner = self._owner
                if await self._areg("acquire_lease", self.namespace, plan.key, owner, ttl=self.lease_ttl, now=now):
                    try:
                        return await self._acreate_leased(plan, request, layout)
                    finally:
                        await self._areg("release_lease", self.namespace, plan.key, owner)
                if time.monotonic() >= deadline:
                    self._gave_up_waiting(plan)
                    return None
                await asyncio.sleep(self.lease_poll)

    async def _afind_created(self, plan: Plan) -> CachedResource | None:
        name = self._display_name(plan)
        found = [c async for c in self.client.alist_cached_contents() if c.display_name == name]
        return max(found, key=lambda c: c.expire_time, default=None)

    async def _acreate_leased(self, plan: Plan, request: ChatRequest, layout: bool) -> Ticket | None:
        now = self.clock()
        entry = await self._alive(plan, now)
        if entry is not None:
            return Ticket(entry)
        if self._is_unsure(plan):
            try:
                found = await self._afind_created(plan)
            except (ProviderError, ProviderConnectionError) as err:
                self._creation_failed(plan, err)
                return None
            if (ticket := self._resolved(plan, found, now)) is not None:
                return ticket
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                resource = await self.client.acreate_cached_content(
                    request,
                    cached_messages=plan.cached_messages,
                    ttl_seconds=self.ttl,
                    display_name=self._display_name(plan),
                    layout=layout,
                )
                break
            except (ProviderError, ProviderConnectionError) as exc:
                if not ambiguous(exc):
                    self._creation_failed(plan, exc)
                    return None
                found, lookup_error = None, None
                try:
                    found = await self._afind_created(plan)
                except (ProviderError, ProviderConnectionError) as err:
                    lookup_error = err
                adopted = self._lost(plan, exc, found, lookup_error, attempt == _ATTEMPTS)
                if adopted is not None:
                    resource = adopted
                    break
                if lookup_error is not None or attempt == _ATTEMPTS:
                    return None
        return self._created(plan, resource, now)
