"""The explicit-cache manager: create once, reuse, refresh, recover, delete.

Given a request, the manager decides which prefix belongs in a provider cache (system instruction,
tools, tool config, and the turns up to the last cache point), finds or creates that cache, and
sends the request with only the turns after it. It owns the whole life of the caches it makes:

* identity: SHA-256 of the canonical cache payload plus a fingerprint of the credential and endpoint
  (never the key itself), kept in the cache's display name and in the registry, so the warm path
  makes no list call;
* creation: single-flight per prefix across the processes sharing the registry; never for a prefix
  known to be too small (the provider's "too small" error teaches the model's minimum, which is
  remembered); never twice after an answer lost in flight (see `_create`);
* policy (`cache_mode`): ``"always"``; ``"off"``; ``"auto"`` creates a cache once the prefix has been
  sent often enough within one TTL that the expected reads pay for creation and storage, and not
  while the provider's implicit cache is seen serving the prefix (that is free of storage);
* refresh: a cache in use that nears expiry is extended; an unused one is left to expire; a failed
  extension of a cache that is still valid is logged and retried later, never failing the call;
* recovery: a cache that vanished (expired, deleted) is forgotten, recreated, and the request
  retried once, invisibly to the caller;
* accounting: the call that creates a cache reports its tokens as cache writes and books their
  storage (tokens x TTL hours); an extension books the added hours.

Everything provider-specific is behind `ExplicitCacheClient` (implemented by `GeminiProvider`); the
registry is reached through `RegistryAccess` (degrade, re-probe, warm-path memory, in `_access`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from decimal import Decimal

from ..errors import CachedContentNotFoundError, CachedContentTooSmallError, ProviderConnectionError, ProviderError
from ..layout import apply_layout, canonical_json
from ..messages import ChatRequest, ChatResponse, StreamChunk
from ..pricing import PriceBook, default_price_book
from ..usage import Usage
from . import _forksafe
from ._access import RegistryAccess
from ._base import CacheEntry, CacheRegistry, one_line
from ._create import CacheCreation
from ._foreign import CacheDecision, ForeignClientAccess
from ._handle import CacheHandle
from ._models import ModelRules
from ._types import (
    DISPLAY_PREFIX,
    CachedResource,
    CacheMode,
    CacheUse,
    ExplicitCacheClient,
    KeyedLocks,
    Plan,
    Ticket,
    chunk_with_cache,
    local_expiry,
    with_cache,
)
from .registry import MemoryRegistry

__all__ = [
    "DISPLAY_PREFIX",
    "CacheDecision",
    "CacheHandle",
    "CacheMode",
    "CacheUse",
    "ExplicitCacheClient",
    "ExplicitCacheManager",
]

logger = logging.getLogger(__name__)

IMPLICIT_SERVED_SHARE = 0.8
"""In auto mode, an inline send whose cached share of input reaches this counts as implicitly served."""
EXTEND_RETRY_SECONDS = 30.0
"""After a failed extension of a cache that is still valid, the next attempt waits this long."""
_OWNED_DISPLAY_NAME = re.compile(rf"{re.escape(DISPLAY_PREFIX)}[0-9a-f]{{40}}")
_PER_PREFIX_LIMIT = 4096  # prefixes whose implicit-cache observation this process keeps


def _new_owner() -> str:
    """This process's identity on leases (a forked child takes a new one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class ExplicitCacheManager(CacheCreation, ForeignClientAccess, ModelRules):
    """Manages explicit provider caches for one client (one credential and endpoint).

    `ttl` is the lifetime given to new caches and to extensions, in seconds (default 1 hour).
    `refresh_before` is how close to expiry a cache in use gets extended (default: a quarter of
    `ttl`). `clock` returns Unix seconds (tests pass an emulator's fake clock).

    Creation is single-flight across every process sharing the registry: a creator holds a lease
    for at most `lease_ttl` seconds (so a crashed creator blocks nobody for longer); the others
    poll the registry every `lease_poll` seconds and use the cache as soon as it is recorded, or
    take the lease over once it expired. After `lease_wait` seconds of waiting a request is sent
    inline rather than held up.

    A registry that fails is replaced by a per-process one until it answers again (tried after 1 s,
    then with a doubling backoff up to a minute); entries read or written in the last
    `registry_cache_seconds` are answered from memory. `registry_clock` (monotonic seconds) times
    both. After ``os.fork()`` the child gets its own locks, lease identity and connections.

    A client that sends its requests itself (a foreign SDK) uses the plan-level API instead of `chat`:
    `acquire` / `aacquire`, `settle`, `invalidate` and `recover` / `arecover` (see `explicit._foreign`).
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
        registry_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("auto", "always", "off"):
            raise ValueError(f"cache_mode must be 'auto', 'always' or 'off', got {mode!r}")
        if ttl <= 0:
            raise ValueError(f"cache_ttl must be positive seconds, got {ttl!r}")
        self.client = client
        self._access = RegistryAccess(
            registry if registry is not None else MemoryRegistry(),
            cache_seconds=registry_cache_seconds,
            clock=registry_clock,
        )
        self.mode: CacheMode = mode
        self.ttl = float(ttl)
        self.refresh_before = self.ttl / 4 if refresh_before is None else float(refresh_before)
        self.prices = prices or default_price_book()
        self.clock = clock
        self.namespace = client.credential_fingerprint
        self.lease_ttl = float(lease_ttl)
        self.lease_wait = self.lease_ttl + 5.0 if lease_wait is None else float(lease_wait)
        self.lease_poll = float(lease_poll)
        self._owner = _new_owner()
        self._locks = KeyedLocks()
        # Writes and storage booked outside a model call (pin, handle.refresh), reported on the next
        # call that uses the cache so handlers see every token and every hour the caller pays for.
        self._unbooked: dict[str, tuple[int, float]] = {}
        self._unbooked_lock = threading.Lock()
        # Prefixes whose last inline send was served by the provider's implicit cache.
        self._implicit_hits: dict[str, bool] = {}
        self._hits_lock = threading.Lock()
        # Caches whose extension failed: not tried again before this time (the manager's clock).
        self._extend_after: dict[str, float] = {}
        self._init_creation()
        self._init_models()
        _forksafe.register(self)

    def _after_fork(self) -> None:
        """In a forked child: a lease identity and locks of its own; the parent reports what it booked."""
        self._owner = _new_owner()
        self._locks = KeyedLocks()
        self._unbooked_lock = threading.Lock()
        self._unbooked = {}
        self._hits_lock = threading.Lock()
        self._unsure_lock = threading.Lock()

    @property
    def registry(self) -> CacheRegistry:
        """The shared registry (while it fails, calls are answered by a per-process one)."""
        return self._access.registry

    @registry.setter
    def registry(self, registry: CacheRegistry) -> None:
        self._access.registry = registry

    @property
    def registry_cache_seconds(self) -> float:
        return self._access.cache_seconds

    @registry_cache_seconds.setter
    def registry_cache_seconds(self, seconds: float) -> None:
        self._access.cache_seconds = float(seconds)

    @property
    def registry_clock(self) -> Callable[[], float]:
        return self._access.clock

    @registry_clock.setter
    def registry_clock(self, clock: Callable[[], float]) -> None:
        self._access.clock = clock

    @property
    def provider(self) -> str:
        return self.client.provider

    @property
    def price_provider(self) -> str:
        return self.client.price_provider

    def _book_later(self, key: str, tokens: int, token_hours: float) -> None:
        with self._unbooked_lock:
            old_tokens, old_hours = self._unbooked.get(key, (0, 0.0))
            self._unbooked[key] = (old_tokens + tokens, old_hours + token_hours)

    def _with_unbooked(self, ticket: Ticket) -> Ticket:
        with self._unbooked_lock:
            tokens, hours = self._unbooked.pop(ticket.entry.key, (0, 0.0))
        if not (tokens or hours):
            return ticket
        return replace(
            ticket,
            written_tokens=ticket.written_tokens + tokens,
            storage_token_hours=ticket.storage_token_hours + hours,
        )

    # -- planning -------------------------------------------------------------------------------

    def _plan(self, request: ChatRequest, layout: bool, *, pinned: bool = False, sending: bool = True) -> Plan | None:
        """The prefix to cache; `pinned` creates it whatever the policy (and raises what a policy would
        swallow); `sending` keeps at least one turn out of the cache (a request needs one of its own)."""
        if self.mode == "off" and not pinned:
            return None
        if layout:
            request = apply_layout(request)
        others = [m for m in request.messages if m.role != "system"]
        cached = 0
        for i, message in enumerate(others):
            if message.cache_point:
                cached = i + 1
        if sending:
            cached = min(cached, max(len(others) - 1, 0))
        has_system = len(others) < len(request.messages)
        if not (has_system or request.tools or cached):
            return None
        key_of = getattr(self.client, "cache_key", None)
        if callable(key_of):  # the same digest, computed once per distinct prefix (GeminiProvider)
            key = str(key_of(request, cached_messages=cached, layout=False, salt=self.namespace))
        else:
            payload = self.client.cache_payload(request, cached_messages=cached, layout=False)
            digest = hashlib.sha256(canonical_json(payload, what="cache payload").encode())
            digest.update(self.namespace.encode())
            key = digest.hexdigest()
        return Plan(key, cached, request.model, pinned)

    def prefix_key(self, request: ChatRequest, *, layout: bool = True) -> str | None:
        """The registry key of `request`'s cacheable prefix (None when nothing in it is cacheable)."""
        plan = self._plan(request, layout)
        return None if plan is None else plan.key

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

    def _should_create(self, plan: Plan, request: ChatRequest, now: float) -> bool:
        if self._skip_unsupported(plan):
            return False
        if self._reg("too_small", self.namespace, plan.key) is not None:
            return False
        if plan.pinned:
            return True  # the caller asked for this cache: Gemini's answer, not an estimate, decides
        minimum = self._minimum(plan.model)
        if minimum is not None and self._estimate_tokens(request, plan) < minimum / 2:
            return False
        if self.mode == "always":
            return True
        sends = self._reg("note_sent", self.namespace, plan.key, now=now, window=self.ttl)
        if self._implicit_hits.get(plan.key):
            return False  # implicit caching serves this prefix for free: no storage to pay until it stops
        return bool(sends >= self._breakeven_sends(plan.model))

    def _observe_inline(self, plan: Plan | None, usage: Usage | None) -> None:
        """Remember whether the provider's implicit cache served an inline send of this prefix."""
        if plan is None or usage is None or self.mode != "auto":
            return
        served = usage.cache_read_tokens >= IMPLICIT_SERVED_SHARE * usage.input_tokens > 0
        with self._hits_lock:
            self._implicit_hits.pop(plan.key, None)
            self._implicit_hits[plan.key] = served  # most recently observed last
            while len(self._implicit_hits) > _PER_PREFIX_LIMIT:
                del self._implicit_hits[next(iter(self._implicit_hits))]

    # -- sync path ------------------------------------------------------------------------------

    def _extend(self, entry: CacheEntry, ttl_seconds: float | None = None) -> CacheEntry:
        resource = self.client.update_cached_content(entry.name, ttl_seconds=ttl_seconds or self.ttl)
        return self._extended(entry, resource)

    def _extended(self, entry: CacheEntry, resource: CachedResource) -> CacheEntry:
        new = replace(entry, expire_at=local_expiry(resource, self.clock()))
        self._reg("put", new)
        return new

    def _pinned(self, ticket: Ticket, prefix: ChatRequest) -> CacheHandle:
        if ticket.created:
            self._book_later(ticket.entry.key, ticket.written_tokens, ticket.storage_token_hours)
        return CacheHandle(self, ticket.entry, prefix, created=ticket.created)

    def _refreshed_by_caller(self, old: CacheEntry, new: CacheEntry) -> CacheEntry:
        self._book_later(new.key, 0, max(new.expire_at - old.expire_at, 0.0) / 3600 * new.tokens)
        return new

    def _extension_due(self, ticket: Ticket, now: float) -> bool:
        entry = ticket.entry
        if ticket.created or entry.expire_at - now > self.refresh_before:
            return False
        return self._extend_after.get(entry.name, -math.inf) <= now

    def _extension_failed(self, entry: CacheEntry, exc: ProviderError | ProviderConnectionError, now: float) -> None:
        """The cache is still valid (`_live` checked): use it, and try extending it again later."""
        retry_at = now + EXTEND_RETRY_SECONDS
        self._extend_after = {n: t for n, t in self._extend_after.items() if t > now}  # drop the stale
        self._extend_after[entry.name] = retry_at
        logger.warning(
            "could not extend cache %s (%s); using it as is (valid for %.0f s more), retrying in %.0f s",
            entry.name,
            one_line(exc),
            entry.expire_at - now,
            EXTEND_RETRY_SECONDS,
        )

    def _with_extension(self, ticket: Ticket, new: CacheEntry) -> Ticket:
        self._extend_after.pop(new.name, None)
        added = max(new.expire_at - ticket.entry.expire_at, 0.0) / 3600 * new.tokens
        return replace(ticket, entry=new, extended=True, storage_token_hours=ticket.storage_token_hours + added)

    def _maybe_extend(self, ticket: Ticket, now: float) -> Ticket:
        if not self._extension_due(ticket, now):
            return ticket
        try:
            new = self._extend(ticket.entry)
        except CachedContentNotFoundError:
            raise
        except (ProviderError, ProviderConnectionError) as exc:
            self._extension_failed(ticket.entry, exc, now)
            return ticket
        return self._with_extension(ticket, new)

    def _ticket(
        self, plan: Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
    ) -> Ticket | None:
        if plan is None:
            return None
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:
            try:
                return self._with_unbooked(self._maybe_extend(Ticket(entry, recovered=recovering), now))
            except CachedContentNotFoundError:
                self._reg("forget", self.namespace, plan.key, name=entry.name)
                recovering = True
        if not recovering and not self._should_create(plan, request, now):
            return None
        if recovering and self._reg("too_small", self.namespace, plan.key) is not None:
            return None
        ticket = self._create(plan, request, layout)
        return None if ticket is None else replace(ticket, recovered=recovering)

    def chat(self, request: ChatRequest, *, layout: bool = True, pinned: bool = False) -> ChatResponse:
        """Send `request`, against its prefix's cache when there is (or should be) one.

        `pinned`: the prefix (up to the last cache point) is a pinned context's: its cache is created
        whatever `mode` says, and a failure to create it is raised rather than sent inline.
        """
        plan = self._plan(request, layout, pinned=pinned)
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
        return with_cache(response, ticket)

    def stream(self, request: ChatRequest, *, layout: bool = True, pinned: bool = False) -> Iterator[StreamChunk]:
        plan = self._plan(request, layout, pinned=pinned)
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
            yield chunk_with_cache(chunk, ticket)

    # -- async path (the same decisions; only the I/O awaits) -------------------------------------

    async def _aextend(self, entry: CacheEntry, ttl_seconds: float | None = None) -> CacheEntry:
        resource = await self.client.aupdate_cached_content(entry.name, ttl_seconds=ttl_seconds or self.ttl)
        return self._extended(entry, resource)

    async def _amaybe_extend(self, ticket: Ticket, now: float) -> Ticket:
        if not self._extension_due(ticket, now):
            return ticket
        try:
            new = await self._aextend(ticket.entry)
        except CachedContentNotFoundError:
            raise
        except (ProviderError, ProviderConnectionError) as exc:
            self._extension_failed(ticket.entry, exc, now)
            return ticket
        return self._with_extension(ticket, new)

    async def _aticket(
        self, plan: Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
    ) -> Ticket | None:
        if plan is None:
            return None
        now = self.clock()
        entry = self._live(plan, now)
        if entry is not None:
            try:
                return self._with_unbooked(await self._amaybe_extend(Ticket(entry, recovered=recovering), now))
            except CachedContentNotFoundError:
                self._reg("forget", self.namespace, plan.key, name=entry.name)
                recovering = True
        if not recovering:
            await self._aestimate_tokens(request, plan)
        if not recovering and not self._should_create(plan, request, now):
            return None
        if recovering and self._reg("too_small", self.namespace, plan.key) is not None:
            return None
        ticket = await self._acreate(plan, request, layout)
        return None if ticket is None else replace(ticket, recovered=recovering)

    async def achat(self, request: ChatRequest, *, layout: bool = True, pinned: bool = False) -> ChatResponse:
        plan = self._plan(request, layout, pinned=pinned)
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
        return with_cache(response, ticket)

    async def astream(
        self, request: ChatRequest, *, layout: bool = True, pinned: bool = False
    ) -> AsyncIterator[StreamChunk]:
        plan = self._plan(request, layout, pinned=pinned)
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
        yield chunk_with_cache(first, ticket)
        async for chunk in chunks:
            yield chunk_with_cache(chunk, ticket)

    # -- explicit control -------------------------------------------------------------------------

    def pin(self, prefix: ChatRequest, *, layout: bool = True) -> CacheHandle:
        """Create (or find) the cache for `prefix` now, whatever the policy, and return its handle.

        `prefix` holds what to cache: system messages, tools, and the turns to cache (all of its
        non-system messages). Raises `CachedContentTooSmallError` when the provider refuses it.
        """
        plan = self._pin_plan(prefix, layout)
        entry = self._live(plan, self.clock())
        if entry is not None:
            return CacheHandle(self, entry, prefix, created=False)
        ticket = self._create(plan, prefix, layout)
        assert ticket is not None  # pinned creation raises instead of returning None
        return self._pinned(ticket, prefix)

    async def apin(self, prefix: ChatRequest, *, layout: bool = True) -> CacheHandle:
        plan = self._pin_plan(prefix, layout)
        entry = self._live(plan, self.clock())
        if entry is not None:
            return CacheHandle(self, entry, prefix, created=False)
        ticket = await self._acreate(plan, prefix, layout)
        assert ticket is not None
        return self._pinned(ticket, prefix)

    def _pin_plan(self, prefix: ChatRequest, layout: bool) -> Plan:
        self._require_explicit(prefix.model)
        plan = self._plan(prefix, layout, pinned=True, sending=False)
        if plan is None:
            raise ValueError("nothing to cache: give a system message, tools or at least one message")
        tokens = self._reg("too_small", self.namespace, plan.key)
        if tokens is not None:
            minimum = self._minimum(plan.model)
            raise CachedContentTooSmallError(
                f"Cached content is too small. total_token_count={tokens}, min_total_token_count={minimum} "
                f"(learned earlier for this prefix on {plan.model})",
                total_token_count=tokens,
                min_total_token_count=minimum,
                status_code=400,
                code="INVALID_ARGUMENT",
                provider=self.client.provider,
            )
        return plan

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
        return [c for c in self.client.list_cached_contents() if _OWNED_DISPLAY_NAME.fullmatch(c.display_name)]

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
