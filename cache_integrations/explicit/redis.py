"""A registry in Redis, for fleets: one cache per prefix across processes and hosts.

Entries are hashes that expire with the cache they describe (``PEXPIREAT``), leases are
``SET NX PX`` keys that vanish by themselves when a creator dies, and every read-modify-write is one
Lua script, so concurrent workers never lose an update. Install with ``pip install
"cache-integrations[redis]"`` and select it with ``cache_registry="redis://host:6379/0"``.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from . import _forksafe
from ._base import CacheEntry, CacheRegistry, FileEntry, mask_url, scrub_url

if TYPE_CHECKING:  # pragma: no cover
    import redis as redis_sync
    import redis.asyncio as redis_async

__all__ = ["RedisRegistry"]

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_FORGET = """
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'name') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'uses', 1)
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'expire_at', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(ARGV[2]) * 1000))
end
return 1
"""
_FORGET_FILE = """
local name = redis.call('HGET', KEYS[1], 'name')
if not name then return 0 end
if ARGV[1] == '' or name == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('DEL', ARGV[2] .. name)
  return 1
end
return 0
"""
_FILE_FIELDS = ("name", "uri", "mime_type", "size", "sha256", "expire_at", "created_at", "state", "display_name")
# The count's key expires with its window, so Redis holds only the counts that still matter.
_NOTE_SENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


class RedisRegistry(CacheRegistry):
    """Registry over a Redis server (or cluster endpoint) shared by every worker of a fleet."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "cache-integrations", **options: Any):
        try:
            import redis  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('RedisRegistry needs redis-py: pip install "cache-integrations[redis]"') from exc
        self.url = url
        self.prefix = prefix
        self._options = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, **options}
        self._connect()
        _forksafe.register(self)

    def _connect(self) -> None:
        import redis

        problem = None
        try:
            client = redis.Redis.from_url(self.url, **self._options)
        except ValueError as exc:  # redis-py's parse errors may quote the URL, password included
            problem = scrub_url(str(exc), self.url)
        if problem is not None:  # raised outside the except block: no exception chain holds the URL
            from ..errors import ConfigurationError

            raise ConfigurationError(f"cache_registry: invalid Redis URL {mask_url(self.url)!r}: {problem}")
        self._client: redis_sync.Redis = client
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._forget = self._client.register_script(_FORGET)
        self._touch = self._client.register_script(_TOUCH)
        self._note = self._client.register_script(_NOTE_SENT)
        self._forget_file = self._client.register_script(_FORGET_FILE)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis] = (
            weakref.WeakKeyDictionary()
        )

    def _after_fork(self) -> None:
        """A forked child gets clients of its own (the parent's sockets are left to the parent)."""
        self._connect()

    def __repr__(self) -> str:
        return f"RedisRegistry({mask_url(self.url)!r})"

    def describe_error(self, exc: BaseException) -> str:
        return scrub_url(super().describe_error(exc), self.url)

    # -- keys ---------------------------------------------------------------------------------

    def _k(self, namespace: str, kind: str, subject: str) -> str:
        return f"{self.prefix}:{namespace}:{kind}:{subject}"

    @staticmethod
    def _mapping(entry: CacheEntry) -> dict[str, str]:
        return {
            "name": entry.name,
            "model": entry.model,
            "tokens": str(entry.tokens),
            "expire_at": repr(entry.expire_at),
            "created_at": repr(entry.created_at),
            "last_used": repr(entry.last_used),
            "uses": str(entry.uses),
            "pinned": "1" if entry.pinned else "0",
        }

    @staticmethod
    def _entry(namespace: str, key: str, raw: dict[Any, Any]) -> CacheEntry | None:
        if not raw:
            return None
        f = _decode(raw)
        return CacheEntry(
            namespace=namespace,
            key=key,
            name=f["name"],
            model=f["model"],
            tokens=int(f["tokens"]),
            expire_at=float(f["expire_at"]),
            created_at=float(f["created_at"]),
            last_used=float(f["last_used"]),
            uses=int(f["uses"]),
            pinned=f.get("pinned") == "1",
        )

    # -- entries --------------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> CacheEntry | None:
        return self._entry(namespace, key, self._client.hgetall(self._k(namespace, "entry", key)))

    def put(self, entry: CacheEntry) -> None:
        name = self._k(entry.namespace, "entry", entry.key)
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(name)
        pipe.hset(name, mapping=self._mapping(entry))  # type: ignore[arg-type]
        pipe.pexpireat(name, int(entry.expire_at * 1000))  # the entry dies with the cache
        pipe.execute()

    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        self._touch(
            keys=[self._k(namespace, "entry", key)], args=[repr(now), "" if expire_at is None else repr(expire_at)]
        )

    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        self._forget(keys=[self._k(namespace, "entry", key)], args=[name or ""])

    def entries(self, namespace: str | None = None) -> list[CacheEntry]:
        pattern = self._k(namespace or "*", "entry", "*")
        out = []
        for raw_key in self._client.scan_iter(match=pattern, count=500):
            k = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            ns, _, key = k[len(self.prefix) + 1 :].partition(":entry:")
            entry = self._entry(ns, key, self._client.hgetall(k))
            if entry is not None:
                out.append(entry)
        return out

    # -- evidence and facts -----------------------------------------------------------------------

    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        return int(self._note(keys=[self._k(namespace, "sends", key)], args=[max(int(window * 1000), 1)]))

    def min_tokens(self, namespace: str, model: str) -> int | None:
        value = self._client.get(self._k(namespace, "min_tokens", model))
        return None if value is None else int(value)

    def learn_min_tokens(self, namespace: str, model: str, min_tokens: int) -> None:
        self._client.set(self._k(namespace, "min_tokens", model), min_tokens)

    def too_small(self, namespace: str, key: str) -> int | None:
        value = self._client.get(self._k(namespace, "too_small", key))
        return None if value is None else int(value)

    def mark_too_small(self, namespace: str, key: str, tokens: int) -> None:
        self._client.set(self._k(namespace, "too_small", key), tokens)

    def fact(self, namespace: str, kind: str, subject: str) -> int | None:
        value = self._client.get(self._k(namespace, "fact", f"{kind}:{subject}"))
        return None if value is None else int(value)

    def set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        self._client.set(self._k(namespace, "fact", f"{kind}:{subject}"), value)

    # -- files: a hash per content key, and the file name pointing at it; both die with the file -------

    @staticmethod
    def _file(namespace: str, key: str, raw: dict[Any, Any]) -> FileEntry | None:
        if not raw:
            return None
        f = _decode(raw)
        return FileEntry(
            namespace=namespace,
            key=key,
            name=f["name"],
            uri=f["uri"],
            mime_type=f["mime_type"],
            size=int(f["size"]),
            sha256=f["sha256"],
            expire_at=float(f["expire_at"]),
            created_at=float(f["created_at"]),
            state=f.get("state", "ACTIVE"),
            display_name=f.get("display_name", ""),
            source_path=f.get("source_path") or None,
        )

    def get_file(self, namespace: str, key: str) -> FileEntry | None:
        return self._file(namespace, key, self._client.hgetall(self._k(namespace, "file", key)))

    def find_file(self, namespace: str, name: str) -> FileEntry | None:
        key = self._client.get(self._k(namespace, "filename", name))
        if key is None:
            return None
        found = self.get_file(namespace, key.decode() if isinstance(key, bytes) else str(key))
        return found if found is not None and found.name == name else None

    def put_file(self, entry: FileEntry) -> None:
        name = self._k(entry.namespace, "file", entry.key)
        index = self._k(entry.namespace, "filename", entry.name)
        fields = {
            f: repr(v) if isinstance(v, float) else str(v) for f in _FILE_FIELDS if (v := getattr(entry, f)) is not None
        }
        fields["source_path"] = entry.source_path or ""
        expire_ms = int(entry.expire_at * 1000)
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(name)
        pipe.hset(name, mapping=fields)  # type: ignore[arg-type]
        pipe.pexpireat(name, expire_ms)
        pipe.set(index, entry.key)
        pipe.pexpireat(index, expire_ms)
        pipe.execute()

    def forget_file(self, namespace: str, key: str, *, name: str | None = None) -> None:
        self._forget_file(keys=[self._k(namespace, "file", key)], args=[name or "", self._k(namespace, "filename", "")])

    def file_entries(self, namespace: str | None = None) -> list[FileEntry]:
        out = []
        for raw_key in self._client.scan_iter(match=self._k(namespace or "*", "file", "*"), count=500):
            k = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            ns, _, key = k[len(self.prefix) + 1 :].partition(":file:")
            found = self._file(ns, key, self._client.hgetall(k))
            if found is not None:
                out.append(found)
        return out

    # -- leases -----------------------------------------------------------------------------------

    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        return bool(self._acquire(keys=[self._k(namespace, "lease", key)], args=[owner, max(int(ttl * 1000), 1)]))

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        self._release(keys=[self._k(namespace, "lease", key)], args=[owner])

    # -- async (redis.asyncio, one client per event loop) -------------------------------------------

    def _aclient(self) -> redis_async.Redis:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(self.url, **self._options)
            self._async[loop] = client
        return client

    async def aget(self, namespace: str, key: str) -> CacheEntry | None:
        raw = await self._aclient().hgetall(self._k(namespace, "entry", key))
        return self._entry(namespace, key, raw)

    async def aput(self, entry: CacheEntry) -> None:
        name = self._k(entry.namespace, "entry", entry.key)
        async with self._aclient().pipeline(transaction=True) as pipe:
            pipe.delete(name)
            pipe.hset(name, mapping=self._mapping(entry))  # type: ignore[arg-type]
            pipe.pexpireat(name, int(entry.expire_at * 1000))
            await pipe.execute()

    async def aacquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        result = await self._aclient().eval(
            _ACQUIRE, 1, self._k(namespace, "lease", key), owner, max(int(ttl * 1000), 1)
        )
        return bool(result)

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        await self._aclient().eval(_RELEASE, 1, self._k(namespace, "lease", key), owner)

    def close(self) -> None:
        self._client.close()
