"""`CacheHandle`: a pinned context the caller controls (refresh, delete), backed by the manager."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..messages import ChatRequest
from ._base import CacheEntry

if TYPE_CHECKING:  # pragma: no cover
    from .manager import ExplicitCacheManager

__all__ = ["CacheHandle"]


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
