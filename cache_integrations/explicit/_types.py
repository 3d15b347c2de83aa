"""The manager's vocabulary: what it needs from a provider client, and what it reports per call."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ..messages import ChatRequest, ChatResponse, StreamChunk
from ..usage import Usage
from ._base import CacheEntry

__all__ = [
    "DISPLAY_PREFIX",
    "SAFETY_SECONDS",
    "CacheMode",
    "CacheUse",
    "CachedResource",
    "ExplicitCacheClient",
    "KeyedLocks",
    "Plan",
    "Ticket",
    "cache_usage",
    "cache_use_dict",
    "chunk_with_cache",
    "local_expiry",
    "with_cache",
]

CacheMode = Literal["auto", "always", "off"]
DISPLAY_PREFIX = "cache-integrations:"
"""Display names of the caches this library creates start with this, followed by the key."""
SAFETY_SECONDS = 15.0  # never send a cache that expires within this margin


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


def local_expiry(resource: CachedResource, now: float) -> float:
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

    def alist_cached_contents(self, page_size: int = 100) -> AsyncIterator[CachedResource]: ...

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


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    cached_messages: int
    model: str
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class Ticket:
    """A cache to send with, and what obtaining it cost."""

    entry: CacheEntry
    created: bool = False
    extended: bool = False
    recovered: bool = False
    written_tokens: int = 0
    storage_token_hours: float = 0.0


class KeyedLocks:
    """One lock per prefix key, so creating caches for different prefixes never waits on another.

    A lock lives while someone holds or waits for it, so the table stays as small as the work in flight.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._async: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()

    def sync(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def aio(self, key: str) -> asyncio.Lock:
        loop = id(asyncio.get_running_loop())
        with self._guard:
            lock = self._async.get((loop, key))
            if lock is None:
                lock = self._async[(loop, key)] = asyncio.Lock()
            return lock


# -- what a call reports -----------------------------------------------------------------------------


def cache_usage(usage: Usage, ticket: Ticket) -> Usage:
    """The creating call also consumed the cache's tokens (billed at the input rate)."""
    return replace(
        usage,
        baseline_input_tokens=usage.input_without_caching,
        input_tokens=usage.input_tokens + ticket.written_tokens,
        cache_write_tokens=usage.cache_write_tokens + ticket.written_tokens,
        cache_storage_token_hours=usage.cache_storage_token_hours + ticket.storage_token_hours,
    )


def _use(ticket: Ticket) -> CacheUse:
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


def with_cache(response: ChatResponse, ticket: Ticket) -> ChatResponse:
    return replace(response, usage=cache_usage(response.usage, ticket), cache=_use(ticket))


def chunk_with_cache(chunk: StreamChunk, ticket: Ticket) -> StreamChunk:
    if not chunk.final:
        return chunk
    return replace(chunk, usage=cache_usage(chunk.usage or Usage(), ticket), cache=_use(ticket))


def cache_use_dict(use: CacheUse | None) -> Mapping[str, Any] | None:
    return None if use is None else use.as_dict()
