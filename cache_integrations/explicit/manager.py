"""The explicit-cache manager: create once, reuse, refresh, recover, delete.

Given a request, the manager decides which prefix belongs in a provider cache (system instruction,
tools, tool config, and the turns up to the last cache point), finds or creates that cache, and
sends the request with only the turns after it. It owns the whole life of the caches it makes:

* identity: SHA-256 of the canonical cache payload plus a fingerprint of the credential and endpoint
  (never the key itself), kept in the cache's display name and in the registry, so the warm path
  makes no list call;
* creation: single-flight per prefix within the process; never for a prefix known to be too small
  (the provider's "too small" error teaches the model's minimum, which is remembered);
* policy (`cache_mode`): ``"always"``; ``"off"``; ``"auto"`` creates a cache once the prefix has been
  sent often enough within one TTL that the expected reads pay for creation and storage, and not
  while the provider's implicit cache is seen serving the prefix (that is free of storage);
* refresh: a cache in use that nears expiry is extended; an unused one is left to expire;
* recovery: a cache that vanished (expired, deleted) is forgotten, recreated, and the request
  retried once, invisibly to the caller;
* accounting: the call that creates a cache reports its tokens as cache writes and books their
  storage (tokens x TTL hours); an extension books the added hours.

Everything provider-specific is behind `ExplicitCacheClient` (implemented by `GeminiProvider`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from ..errors import CachedContentNotFoundError, CachedContentTooSmallError, ProviderError
from ..layout import apply_layout, canonical_json
from ..messages import ChatRequest, ChatResponse, StreamChunk
from ..pricing import PriceBook, default_price_book
from ..usage import Usage
from .registry import CacheEntry, CacheRegistry, MemoryRegistry

__all__ = [
    "DISPLAY_PREFIX",
    "CacheHandle",
    "CacheMode",
    "CacheUse",
    "ExplicitCacheClient",
    "ExplicitCacheManager",
]

logger = logging.getLogger(__name__)

CacheMode = Literal["auto", "always", "off"]
DISPLAY_PREFIX = "cache-integrations:"
"""Display names of the caches this library creates start with this, followed by the key."""
_SAFETY_SECONDS = 15.0  # never send a cache that expires within this margin
IMPLICIT_SERVED_SHARE = 0.8
"""In auto mode, an inline send whose cached share of input reaches this counts as implicitly served."""


class CachedResource(Protocol):
    """A provider cache as the provider describes it (GeminiProvider's `CachedContent`)."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def expire_time(self) -> datetime: ...

    @property
    def update_time(self) -> datetime: ...

    @property
    def total_token_count(self) -> int: ...


def _local_expiry(resource: CachedResource, now: float) -> float:
    """When the cache expires on *our* clock: now plus the lifetime the server just granted.

    Comparing the server's absolute expireTime with the local clock would make every decision
    depend on clock skew between client and provider (and on when recorded traffic is replayed).
    """
    return now + (resource.expire_time - resource.update_time).total_seconds()


class ExplicitCacheClient(Protocol):
    """The provider operations the manager needs (GeminiProvider implements them)."""

    @property
    def provider(self) -> str: ...

    @property
    def price_provider(self) -> str: ...

    @property
    def credential_fingerprint(self) -> str: ...

    def cache_payload(self, request: ChatRequest, *, cached_messages: int, layout: bool = True) -> dict[str, Any]: ...

    def create_cached_content(
        self,
        request: ChatRequest,
        *,
        cached_messages: int,
        ttl_seconds: float | None = None,
        display_name: str | None = None,
        layout: bool = True,
    ) -> CachedResource: ...

    async def acreate_cached_content(
        self,
        request: ChatRequest,
        *,
        cached_messages: int,
        ttl_seconds: float | None = None,
        display_name: str | None = None,
        layout: bool = True,
    ) -> CachedResource: ...

    def update_cached_content(self, name: str, *, ttl_seconds: float | None = None) -> CachedResource: ...

    async def aupdate_cached_content(self, name: str, *, ttl_seconds: float | None = None) -> CachedResource: ...

    def delete_cached_content(self, name: str) -> None: ...

    async def adelete_cached_content(self, name: str) -> None: ...

    def list_cached_contents(self, page_size: int = 100) -> Iterator[CachedResource]: ...

    def chat(
        self, request: ChatRequest, *, layout: bool = True, cached_content: str | None = None, cached_messages: int = 0
    ) -> ChatResponse: ...

    async def achat(
        self, request: ChatRequest, *, layout: bool = True, cached_content: str | None = None, cached_messages: int = 0
    ) -> ChatResponse: ...

    def stream(
        self, request: ChatRequest, *, layout: bool = True, cached_content: str | None = None, cached_messages: int = 0
    ) -> Iterator[StreamChunk]: ...

    def astream(
        self, request: ChatRequest, *, layout: bool = True, cached_content: str | None = None, cached_messages: int = 0
    ) -> AsyncIterator[StreamChunk]: ...


@dataclass(frozen=True, slots=True)
class CacheUse:
    """What the manager did for one call; adapters expose it next to the usage numbers."""

    name: str
    tokens: int
    expire_at: float
    created: bool = False
    extended: bool = False
    recovered: bool = False
    storage_token_hours: float = 0.0
    written_tokens: int = 0
    """Cache tokens this call wrote (creation), on top of its prompt."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokens": self.tokens,
            "expire_time": datetime.fromtimestamp(self.expire_at, UTC).isoformat(),
            "created": self.created,
            "extended": self.extended,
            "recovered": self.recovered,
            "storage_token_hours": self.storage_token_hours,
            "written_tokens": self.written_tokens,
        }


_MISS = object()


@dataclass(frozen=True, slots=True)
class _Hot:
    """A registry entry this process looked up or wrote recently (monotonic seconds)."""

    entry: CacheEntry
    checked: float
    touched: float


@dataclass(frozen=True, slots=True)
class _Plan:
    key: str
    cached_messages: int
    model: str
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class _Ticket:
    """A cache to send with, and what obtaining it cost."""

    entry: CacheEntry
    created: bool = False
    extended: bool = False
    recovered: bool = False
    written_tokens: int = 0
    storage_token_hours: float = 0.0


class _KeyedLocks:
    """One lock per prefix key, so creating caches for different prefixes never waits on another."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._async: dict[tuple[int, str], asyncio.Lock] = {}

    def sync(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def aio(self, key: str) -> asyncio.Lock:
        loop = id(asyncio.get_running_loop())
        with self._guard:
            return self._async.setdefault((loop, key), asyncio.Lock())


class CacheHandle:
    """An explicitly pinned context: a live provider cache the caller controls.

    Requests whose prefix equals the pinned one (same model, system, tools and cached turns, the
    last cached turn marked as a cache point) are sent against this cache automatically. Its
    creation and storage (and any `refresh`) are reported on the next call that uses it.
    """

    def __init__(self, manager: ExplicitCacheManager, entry: CacheEntry, request: ChatRequest, created: bool) -> None:
        self._manager = manager
        self._entry = entry
        self.request = request
        """The pinned prefix as a neutral request (system, tools, cached turns)."""
        self.created = created

    def _current(self) -> CacheEntry:
        """The entry as the registry has it now (requests may have extended the cache since)."""
        latest: CacheEntry | None = self._manager._reg("get", self._entry.namespace, self._entry.key)
        if latest is not None and latest.name == self._entry.name:
            self._entry = latest
        return self._entry

    @property
    def name(self) -> str:
        return self._entry.name

    @property
    def model(self) -> str:
        return self._entry.model

    @property
    def tokens(self) -> int:
        return self._entry.tokens

    @property
    def key(self) -> str:
        return self._entry.key

    @property
    def expire_time(self) -> datetime:
        return datetime.fromtimestamp(self._current().expire_at, UTC)

    def __repr__(self) -> str:
        expires = self.expire_time.isoformat()
        return f"CacheHandle(name={self.name!r}, model={self.model!r}, tokens={self.tokens}, expire_time={expires!r})"

    def refresh(self, ttl_seconds: float | None = None) -> CacheHandle:
        """Extend the cache to `ttl_seconds` (default: the manager's TTL) from now."""
        old = self._current()
        self._entry = self._manager._refreshed_by_caller(old, self._manager._extend(old, ttl_seconds))
        return self

    async def arefresh(self, ttl_seconds: float | None = None) -> CacheHandle:
        old = self._current()
        self._entry = self._manager._refreshed_by_caller(old, await self._manager._aextend(old, ttl_seconds))
        return self

    def delete(self) -> None:
        """Delete the provider cache now (storage stops being billed) and forget it."""
        self._manager._delete_entry(self._current())

    async def adelete(self) -> None:
        await self._manager._adelete_entry(self._current())


class ExplicitCacheManager:
    """Manages explicit provider caches for one client (one credential and endpoint).

    `ttl` is the lifetime given to new caches and to extensions, in seconds (default 1 hour).
    `refresh_before` is how close to expiry a cache in use gets extended (default: a quarter of
    `ttl`). `clock` returns Unix seconds (tests pass an emulator's fake clock).

    Creation is single-flight across every process sharing the registry: a creator holds a lease
    for at most `lease_ttl` seconds (so a crashed creator blocks nobody for longer); the others
    poll the registry every `lease_poll` seconds and use the cache as soon as it is recorded, or
    take the lease over once it expired. After `lease_wait` seconds of waiting a request is sent
    inline rather than held up.
    """

    def __init__(
        self,
        client: ExplicitCacheClient,
        *,
        registry: CacheRegistry | None = None,
        mode: CacheMode = "auto",
        ttl: float = 3600.0,
        refresh_before: float | None = None,
        prices: PriceBook | None = None,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = 60.0,
        lease_wait: float | None = None,
        lease_poll: float = 0.05,
        registry_cache_seconds: float = 2.0,
    ) -> None:
        if mode not in ("auto", "always", "off"):
            raise ValueError(f"cache_mode must be 'auto', 'always' or 'off', got {mode!r}")
        if ttl <= 0:
            raise ValueError(f"cache_ttl must be positive seconds, got {ttl!r}")
        self.client = client
        self.registry = registry if registry is not None else MemoryRegistry()
        self.mode: CacheMode = mode
        self.ttl = float(ttl)
        self.refresh_before = self.ttl / 4 if refresh_before is None else float(refresh_before)
        self.prices = prices or default_price_book()
        self.clock = clock
        self.namespace = client.credential_fingerprint
        self.lease_ttl = float(lease_ttl)
        self.lease_wait = self.lease_ttl + 5.0 if lease_wait is None else float(lease_wait)
        self.lease_poll = float(lease_poll)
        self.registry_cache_seconds = float(registry_cache_seconds)
        self._hot: dict[str, _Hot] = {}
        self._hot_lock = threading.Lock()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._locks = _KeyedLocks()
        self._fallback = MemoryRegistry()
        self._registry_failed = False
        # Writes and storage booked outside a model call (pin, handle.refresh), reported on the next
        # call that uses the cache so handlers see every token and every hour the caller pays for.
        self._unbooked: dict[str, tuple[int, float]] = {}
        self._unbooked_lock = threading.Lock()
        # Prefixes whose last inline send was served by the provider's implicit cache.
        self._implicit_hits: dict[str, bool] = {}

    @property
    def provider(self) -> str:
        return self.client.provider

    @property
    def price_provider(self) -> str:
        return self.client.price_provider

    # -- registry access that degrades instead of failing the user's call -----------------------

    def _reg(self, method: str, *args: Any, **kwargs: Any) -> Any:
        hit = self._hot_answer(method, args)
        if hit is not _MISS:
            return hit
        registry = self._fallback if self._registry_failed else self.registry
        try:
            result = getattr(registry, method)(*args, **kwargs)
        except Exception as exc:
            if registry is self._fallback:
                raise
            self._registry_down(exc)
            result = getattr(self._fallback, method)(*args, **kwargs)
        self._hot_note(method, args, result)
        return result

    def _registry_down(self, exc: Exception) -> None:
        logger.warning(
            "cache registry %r failed (%s: %s); continuing without sharing caches across processes",
            self.registry,
            type(exc).__name__,
            exc,
        )
        self._registry_failed = True

    # The warm path of a networked registry would pay a round trip to look an entry up and another
    # to count its use on every request. Entries looked up (or written) in the last
    # `registry_cache_seconds` are answered from memory and their use is counted at most once per
    # that interval. A cache another worker replaced meanwhile costs one transparent recovery.

    def _hot_answer(self, method: str, args: tuple[Any, ...]) -> Any:
        if method not in ("get", "touch") or self.registry_cache_seconds <= 0:
            return _MISS
        namespace, key = args[0], args[1]
        with self._hot_lock:
            hot = self._hot.get(key)
        if hot is None or hot.entry.namespace != namespace:
            return _MISS
        now = time.monotonic()
        if method == "get":
            return hot.entry if now - hot.checked < self.registry_cache_seconds else _MISS
        return None if now - hot.touched < self.registry_cache_seconds else _MISS

    def _hot_note(self, method: str, args: tuple[Any, ...], result: Any) -> None:
        now = time.monotonic()
        with self._hot_lock:
            if method == "get":
                if isinstance(result, CacheEntry):
                    old = self._hot.get(result.key)
                    self._hot[result.key] = _Hot(result, now, old.touched if old else 0.0)
                else:
                    self._hot.pop(args[1], None)
            elif method == "put":
                self._hot[args[0].key] = _Hot(args[0], now, now)
            elif method == "forget":
                self._hot.pop(args[1], None)
            elif method == "touch" and args[1] in self._hot:
                self._hot[args[1]] = replace(self._hot[args[1]], touched=now)

    def _book_later(self, key: str, tokens: int, token_hours: float) -> None:
        with self._unbooked_lock:
            old_tokens, old_hours = self._unbooked.get(key, (0, 0.0))
            self._unbooked[key] = (old_tokens + tokens, old_hours + token_hours)

    def _with_unbooked(self, ticket: _Ticket) -> _Ticket:
        with self._unbooked_lock:
            tokens, hours = self._unbooked.pop(ticket.entry.key, (0, 0.0))
        if not (tokens or hours):
            return ticket
        return replace(
            ticket,
            written_tokens=ticket.written_tokens + tokens,
            storage_token_hours=ticket.storage_token_hours + hours,
        )

    async def _areg(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`_reg` for the async path: a registry's `a<method>` when it has one (Redis)."""
        registry = self._fallback if self._registry_failed else self.registry
        fn = getattr(registry, "a" + method, None)
        if fn is None:
            return self._reg(method, *args, **kwargs)
        hit = self._hot_answer(method, args)
        if hit is not _MISS:
            return hit
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if registry is self._fallback:
                raise
            self._registry_down(exc)
            result = await getattr(self._fallback, "a" + method)(*args, **kwargs)
        self._hot_note(method, args, result)
        return result

    # -- planning -------------------------------------------------------------------------------

    def _plan(self, request: ChatRequest, layout: bool, *, pinned: bool = False) -> _Plan | None:
        if self.mode == "off" and not pinned:
            return None
        if layout:
            request = apply_layout(request)
        others = [m for m in request.messages if m.role != "system"]
        cached = 0
        for i, message in enumerate(others):
            if message.cache_point:
                cached = i + 1
        if not pinned:
            cached = min(cached, max(len(others) - 1, 0))  # a request needs at least one turn of its own
        has_system = len(others) < len(request.messages)
        if not (has_system or request.tools or cached):
            return None
        payload = self.client.cache_payload(request, cached_messages=cached, layout=False)
        digest = hashlib.sha256(canonical_json(payload, what="cache payload").encode())
        digest.update(self.namespace.encode())
        return _Plan(digest.hexdigest(), cached, request.model, pinned)

    def prefix_key(self, request: ChatRequest, *, layout: bool = True) -> str | None:
        """The registry key of `request`'s cacheable prefix (None when nothing in it is cacheable)."""
        plan = self._plan(request, layout)
        return None if plan is None else plan.key

    def _live(self, plan: _Plan, now: float) -> CacheEntry | None:
        entry: CacheEntry | None = self._reg("get", self.namespace, plan.key)
        if entry is None:
            return None
        if entry.expire_at - now <= _SAFETY_SECONDS:
            self._reg("forget", self.namespace, plan.key, name=entry.name)
            return None
        return entry

    def _breakeven_sends(self, model: str) -> int:
        """Sends within one TTL after which a cache pays for itself (ski rental)."""
        providers = (self.client.price_provider,)
        unit = self.prices.unit_prices(model, providers)
        storage = self.prices.storage_price(model, providers)
        if unit is None or storage is None or unit[0] <= unit[1]:
            return 2  # prices unknown: cache as soon as the prefix is seen again
        full, cached = unit
        # n reads pay when n * (full - cached) > creation (full) + storage for one TTL
        needed = (full + storage * Decimal(self.ttl) / 3600) / (full - cached)
        return max(2, math.ceil(float(needed)))

    def _should_create(self, plan: _Plan, request: ChatRequest, now: float) -> bool:
        if self._reg("too_small", self.namespace, plan.key) is not None:
            return False
        minimum = self._reg("min_tokens", self.namespace, plan.model)
        if minimum is not None and self._estimate_tokens(request, plan) < minimum / 2:
            return False
        if plan.pinned or self.mode == "always":
            return True
        sends = self._reg("note_sent", self.namespace, plan.key, now=now, window=self.ttl)
        if self._implicit_hits.get(plan.key):
            return False  # implicit caching serves this prefix for free: no storage to pay until it stops
        return bool(sends >= self._breakeven_sends(plan.model))

    def _observe_inline(self, plan: _Plan | None, usage: Usage | None) -> None:
        """Remember whether the provider's implicit cache served an inline send of this prefix."""
        if plan is None or usage is None or self.mode != "auto":
            return
        self._implicit_hits[plan.key] = usage.cache_read_tokens >= IMPLICIT_SERVED_SHARE * usage.input_tokens > 0

    def _estimate_tokens(self, request: ChatRequest, plan: _Plan) -> int:
        """A cheap over-estimate-free guess (4 bytes a token), used only to skip hopeless creates."""
        payload = self.client.cache_payload(request, cached_messages=plan.cached_messages, layout=True)
        return len(canonical_json(payload).encode()) // 4

    def _new_entry(self, plan: _Plan, resource: CachedResource, now: float) -> CacheEntry:
        return CacheEntry(
            namespace=self.namespace,
            key=plan.key,
            name=resource.name,
            model=plan.model,
            tokens=resource.total_token_count,
            expire_at=_local_expiry(resource, now),
            created_at=now,
            last_used=now,
            uses=0,
            pinned=plan.pinned,
        )

    def _learn_too_small(self, plan: _Plan, exc: CachedContentTooSmallError) -> None:
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

    def _creation_failed(self, plan: _Plan, exc: ProviderError) -> None:
        """A refused creation: too small is learned and sent inline (raised for a pin); any other
        error is raised when the caller demanded a cache, else logged and the request goes inline."""
        if isinstance(exc, CachedContentTooSmallError):
            self._learn_too_small(plan, exc)
            if plan.pinned:
                raise exc
            return
        if plan.pinned or self.mode == "always":
            raise exc
        logger.warning("could not create a cache for prefix %s (%s); sending it inline", plan.key[:12], exc)

    def _display_name(self, plan: _Plan) -> str:
        return f"{DISPLAY_PREFIX}{plan.key[:40]}"

    # -- sync path ------------------------------------------------------------------------------

    def _create(self, plan: _Plan, request: ChatRequest, layout: bool) -> _Ticket | None:
        with self._locks.sync(plan.key):  # threads of this process queue here
            deadline = time.monotonic() + self.lease_wait
            while True:
                now = self.clock()
                entry = self._live(plan, now)
                if entry is not None:  # another thread or process created it meanwhile
                    return _Ticket(entry)
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

    def _gave_up_waiting(self, plan: _Plan) -> None:
        logger.warning(
            "waited %.0f s for another worker to create the cache for prefix %s; sending inline",
            self.lease_wait,
            plan.key[:12],
        )

    def _create_leased(self, plan: _Plan, request: ChatRequest, layout: bool) -> _Ticket | None:
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:  # recorded between our last look and the lease
            return _Ticket(entry)
        try:
            resource = self.client.create_cached_content(
                request,
                cached_messages=plan.cached_messages,
                ttl_seconds=self.ttl,
                display_name=self._display_name(plan),
                layout=layout,
            )
        except ProviderError as exc:
            self._creation_failed(plan, exc)
            return None
        return self._created(plan, resource, now)

    def _created(self, plan: _Plan, resource: CachedResource, now: float) -> _Ticket:
        """Record a new cache; the creating call reports its tokens as writes and its storage."""
        entry = self._new_entry(plan, resource, now)
        self._reg("put", entry)
        hours = (entry.expire_at - now) / 3600
        return _Ticket(entry, created=True, written_tokens=entry.tokens, storage_token_hours=entry.tokens * hours)

    def _extend(self, entry: CacheEntry, ttl_seconds: float | None = None) -> CacheEntry:
        resource = self.client.update_cached_content(entry.name, ttl_seconds=ttl_seconds or self.ttl)
        return self._extended(entry, resource)

    def _extended(self, entry: CacheEntry, resource: CachedResource) -> CacheEntry:
        new = replace(entry, expire_at=_local_expiry(resource, self.clock()))
        self._reg("put", new)
        return new

    def _pinned(self, ticket: _Ticket, prefix: ChatRequest) -> CacheHandle:
        if ticket.created:
            self._book_later(ticket.entry.key, ticket.written_tokens, ticket.storage_token_hours)
        return CacheHandle(self, ticket.entry, prefix, created=ticket.created)

    def _refreshed_by_caller(self, old: CacheEntry, new: CacheEntry) -> CacheEntry:
        self._book_later(new.key, 0, max(new.expire_at - old.expire_at, 0.0) / 3600 * new.tokens)
        return new

    def _maybe_extend(self, ticket: _Ticket, now: float) -> _Ticket:
        entry = ticket.entry
        if ticket.created or entry.expire_at - now > self.refresh_before:
            return ticket
        new = self._extend(entry)
        added = max(new.expire_at - entry.expire_at, 0.0) / 3600 * entry.tokens
        return replace(ticket, entry=new, extended=True, storage_token_hours=ticket.storage_token_hours + added)

    def _ticket(
        self, plan: _Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
    ) -> _Ticket | None:
        if plan is None:
            return None
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:
            try:
                return self._with_unbooked(self._maybe_extend(_Ticket(entry, recovered=recovering), now))
            except CachedContentNotFoundError:
                self._reg("forget", self.namespace, plan.key, name=entry.name)
                recovering = True
        if not recovering and not self._should_create(plan, request, now):
            return None
        if recovering and self._reg("too_small", self.namespace, plan.key) is not None:
            return None
        ticket = self._create(plan, request, layout)
        return None if ticket is None else replace(ticket, recovered=recovering)

    def chat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        """Send `request`, against its prefix's cache when there is (or should be) one."""
        plan = self._plan(request, layout)
        ticket = self._ticket(plan, request, layout)
        if ticket is None or plan is None:
            inline = self.client.chat(request, layout=layout)
            self._observe_inline(plan, inline.usage)
            return inline
        try:
            response = self.client.chat(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
        except CachedContentNotFoundError:
            self._reg("forget", self.namespace, plan.key, name=ticket.entry.name)
            ticket = self._ticket(plan, request, layout, recovering=True)
            if ticket is None:
                return self.client.chat(request, layout=layout)
            response = self.client.chat(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
        self._reg("touch", self.namespace, plan.key, now=self.clock())
        return _with_cache(response, ticket)

    def stream(self, request: ChatRequest, *, layout: bool = True) -> Iterator[StreamChunk]:
        plan = self._plan(request, layout)
        ticket = self._ticket(plan, request, layout)
        if ticket is None or plan is None:
            for chunk in self.client.stream(request, layout=layout):
                if chunk.final:
                    self._observe_inline(plan, chunk.usage)
                yield chunk
            return
        chunks = self.client.stream(
            request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
        )
        try:
            first = next(chunks)
        except CachedContentNotFoundError:  # raised when the stream opens, before any output
            self._reg("forget", self.namespace, plan.key, name=ticket.entry.name)
            ticket = self._ticket(plan, request, layout, recovering=True)
            if ticket is None:
                yield from self.client.stream(request, layout=layout)
                return
            chunks = self.client.stream(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
            first = next(chunks)
        self._reg("touch", self.namespace, plan.key, now=self.clock())
        for chunk in _prepend(first, chunks):
            yield _chunk_with_cache(chunk, ticket)

    # -- async path (the same decisions; only the I/O awaits) -------------------------------------

    async def _acreate(self, plan: _Plan, request: ChatRequest, layout: bool) -> _Ticket | None:
        async with self._locks.aio(plan.key):
            deadline = time.monotonic() + self.lease_wait
            while True:
                now = self.clock()
                entry = await self._alive(plan, now)
                if entry is not None:
                    return _Ticket(entry)
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

    async def _alive(self, plan: _Plan, now: float) -> CacheEntry | None:
        entry: CacheEntry | None = await self._areg("get", self.namespace, plan.key)
        if entry is None:
            return None
        if entry.expire_at - now <= _SAFETY_SECONDS:
            self._reg("forget", self.namespace, plan.key, name=entry.name)
            return None
        return entry

    async def _acreate_leased(self, plan: _Plan, request: ChatRequest, layout: bool) -> _Ticket | None:
        now = self.clock()
        entry = await self._alive(plan, now)
        if entry is not None:
            return _Ticket(entry)
        try:
            resource = await self.client.acreate_cached_content(
                request,
                cached_messages=plan.cached_messages,
                ttl_seconds=self.ttl,
                display_name=self._display_name(plan),
                layout=layout,
            )
        except ProviderError as exc:
            self._creation_failed(plan, exc)
            return None
        return self._created(plan, resource, now)

    async def _aextend(self, entry: CacheEntry, ttl_seconds: float | None = None) -> CacheEntry:
        resource = await self.client.aupdate_cached_content(entry.name, ttl_seconds=ttl_seconds or self.ttl)
        return self._extended(entry, resource)

    async def _amaybe_extend(self, ticket: _Ticket, now: float) -> _Ticket:
        entry = ticket.entry
        if ticket.created or entry.expire_at - now > self.refresh_before:
            return ticket
        new = await self._aextend(entry)
        added = max(new.expire_at - entry.expire_at, 0.0) / 3600 * entry.tokens
        return replace(ticket, entry=new, extended=True, storage_token_hours=ticket.storage_token_hours + added)

    async def _aticket(
        self, plan: _Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
    ) -> _Ticket | None:
        if plan is None:
            return None
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:
            try:
                return self._with_unbooked(await self._amaybe_extend(_Ticket(entry, recovered=recovering), now))
            except CachedContentNotFoundError:
                self._reg("forget", self.namespace, plan.key, name=entry.name)
                recovering = True
        if not recovering and not self._should_create(plan, request, now):
            return None
        if recovering and self._reg("too_small", self.namespace, plan.key) is not None:
            return None
        ticket = await self._acreate(plan, request, layout)
        return None if ticket is None else replace(ticket, recovered=recovering)

    async def achat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        plan = self._plan(request, layout)
        ticket = await self._aticket(plan, request, layout)
        if ticket is None or plan is None:
            inline = await self.client.achat(request, layout=layout)
            self._observe_inline(plan, inline.usage)
            return inline
        try:
            response = await self.client.achat(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
        except CachedContentNotFoundError:
            self._reg("forget", self.namespace, plan.key, name=ticket.entry.name)
            ticket = await self._aticket(plan, request, layout, recovering=True)
            if ticket is None:
                return await self.client.achat(request, layout=layout)
            response = await self.client.achat(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
        self._reg("touch", self.namespace, plan.key, now=self.clock())
        return _with_cache(response, ticket)

    async def astream(self, request: ChatRequest, *, layout: bool = True) -> AsyncIterator[StreamChunk]:
        plan = self._plan(request, layout)
        ticket = await self._aticket(plan, request, layout)
        if ticket is None or plan is None:
            async for chunk in self.client.astream(request, layout=layout):
                if chunk.final:
                    self._observe_inline(plan, chunk.usage)
                yield chunk
            return
        chunks = self.client.astream(
            request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
        )
        try:
            first = await anext(chunks)
        except CachedContentNotFoundError:
            self._reg("forget", self.namespace, plan.key, name=ticket.entry.name)
            ticket = await self._aticket(plan, request, layout, recovering=True)
            if ticket is None:
                async for chunk in self.client.astream(request, layout=layout):
                    yield chunk
                return
            chunks = self.client.astream(
                request, layout=layout, cached_content=ticket.entry.name, cached_messages=plan.cached_messages
            )
            first = await anext(chunks)
        self._reg("touch", self.namespace, plan.key, now=self.clock())
        yield _chunk_with_cache(first, ticket)
        async for chunk in chunks:
            yield _chunk_with_cache(chunk, ticket)

    # -- explicit control -------------------------------------------------------------------------

    def pin(self, prefix: ChatRequest, *, layout: bool = True) -> CacheHandle:
        """Create (or find) the cache for `prefix` now, whatever the policy, and return its handle.

        `prefix` holds what to cache: system messages, tools, and the turns to cache (all of its
        non-system messages). Raises `CachedContentTooSmallError` when the provider refuses it.
        """
        plan = self._plan(prefix, layout, pinned=True)
        if plan is None:
            raise ValueError("nothing to cache: give a system message, tools or at least one message")
        entry = self._live(plan, self.clock())
        if entry is not None:
            return CacheHandle(self, entry, prefix, created=False)
        ticket = self._create(plan, prefix, layout)
        assert ticket is not None  # pinned creation raises instead of returning None
        return self._pinned(ticket, prefix)

    async def apin(self, prefix: ChatRequest, *, layout: bool = True) -> CacheHandle:
        plan = self._plan(prefix, layout, pinned=True)
        if plan is None:
            raise ValueError("nothing to cache: give a system message, tools or at least one message")
        entry = self._live(plan, self.clock())
        if entry is not None:
            return CacheHandle(self, entry, prefix, created=False)
        ticket = await self._acreate(plan, prefix, layout)
        assert ticket is not None
        return self._pinned(ticket, prefix)

    def _delete_entry(self, entry: CacheEntry) -> None:
        with contextlib.suppress(CachedContentNotFoundError):  # already gone: the goal is reached
            self.client.delete_cached_content(entry.name)
        self._reg("forget", entry.namespace, entry.key, name=entry.name)

    async def _adelete_entry(self, entry: CacheEntry) -> None:
        with contextlib.suppress(CachedContentNotFoundError):
            await self.client.adelete_cached_content(entry.name)
        self._reg("forget", entry.namespace, entry.key, name=entry.name)

    def list_caches(self) -> list[CachedResource]:
        """The live provider caches this library created (any process, this credential)."""
        return [c for c in self.client.list_cached_contents() if c.display_name.startswith(DISPLAY_PREFIX)]

    def delete_all(self) -> int:
        """Delete every live cache this library created under this credential; returns how many."""
        deleted = 0
        for resource in self.list_caches():
            try:
                self.client.delete_cached_content(resource.name)
                deleted += 1
            except CachedContentNotFoundError:
                pass
        for entry in self._reg("entries", self.namespace):
            self._reg("forget", entry.namespace, entry.key, name=entry.name)
        return deleted


def _prepend(first: StreamChunk, rest: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    yield first
    yield from rest


def _cache_usage(usage: Usage | None, ticket: _Ticket) -> Usage | None:
    """The creating call also consumed the cache's tokens (billed at the input rate); usage the
    provider did not report stays unknown."""
    if usage is None:
        return None
    return replace(
        usage,
        baseline_input_tokens=usage.input_without_caching,
        input_tokens=usage.input_tokens + ticket.written_tokens,
        cache_write_tokens=usage.cache_write_tokens + ticket.written_tokens,
        cache_storage_token_hours=usage.cache_storage_token_hours + ticket.storage_token_hours,
    )


def _use(ticket: _Ticket) -> CacheUse:
    e = ticket.entry
    return CacheUse(
        name=e.name,
        tokens=e.tokens,
        expire_at=e.expire_at,
        created=ticket.created,
        extended=ticket.extended,
        recovered=ticket.recovered,
        storage_token_hours=ticket.storage_token_hours,
        written_tokens=ticket.written_tokens,
    )


def _with_cache(response: ChatResponse, ticket: _Ticket) -> ChatResponse:
    return replace(response, usage=_cache_usage(response.usage, ticket), cache=_use(ticket))


def _chunk_with_cache(chunk: StreamChunk, ticket: _Ticket) -> StreamChunk:
    if not chunk.final:
        return chunk
    return replace(chunk, usage=_cache_usage(chunk.usage, ticket), cache=_use(ticket))


def cache_use_dict(use: CacheUse | None) -> Mapping[str, Any] | None:
    return None if use is None else use.as_dict()
