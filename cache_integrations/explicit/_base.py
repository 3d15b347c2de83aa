"""The registry contract (`CacheEntry`, `CacheRegistry`) and the masking of registry URLs.

Split from `registry.py` so the SQLite and Redis implementations can live in modules of their own.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["CacheEntry", "CacheRegistry", "FileEntry", "mask_url", "one_line", "scrub_url"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One live explicit cache. Times are Unix seconds."""

    namespace: str
    key: str
    name: str
    model: str
    tokens: int
    expire_at: float
    created_at: float
    last_used: float
    uses: int = 0
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One uploaded provider file (Gemini Files API), keyed by its content. Times are Unix seconds.

    `key` identifies the content (SHA-256 of the bytes and their media type) within `namespace` (the
    credential's fingerprint); `name` is ``files/<id>``; `source_path` is where the bytes can be read again
    to upload them once more after the file expired (None for bytes that were not a file on disk).
    `expire_at` is on the uploader's clock (its upload time plus the lifetime the server granted).
    """

    namespace: str
    key: str
    name: str
    uri: str
    mime_type: str
    size: int
    sha256: str
    expire_at: float
    created_at: float
    state: str = "ACTIVE"
    display_name: str = ""
    source_path: str | None = None


class CacheRegistry(ABC):
    """The registry interface. Implementations are thread-safe, and safe to use after ``os.fork()``
    (a child opens its own connections; its inherited ones are left alone)."""

    @abstractmethod
    def get(self, namespace: str, key: str) -> CacheEntry | None: ...

    @abstractmethod
    def put(self, entry: CacheEntry) -> None:
        """Record (or replace) the cache for `entry.key`."""

    @abstractmethod
    def touch(self, namespace: str, key: str, *, now: float, expire_at: float | None = None) -> None:
        """Count a use; move the expiry when the cache was extended."""

    @abstractmethod
    def forget(self, namespace: str, key: str, *, name: str | None = None) -> None:
        """Drop the entry; with `name`, only if it still points at that cache (another process may
        already have replaced it)."""

    @abstractmethod
    def entries(self, namespace: str | None = None) -> list[CacheEntry]: ...

    @abstractmethod
    def note_sent(self, namespace: str, key: str, *, now: float, window: float) -> int:
        """Count one more send of a prefix; return the sends within the current window.

        Counts older than `window` are worthless: implementations drop them (and keep a bounded number).
        """

    @abstractmethod
    def min_tokens(self, namespace: str, model: str) -> int | None:
        """The minimum cache size the provider reported for `model`, if it did."""

    @abstractmethod
    def learn_min_tokens(self, namespace: str, model: str, min_tokens: int) -> None: ...

    @abstractmethod
    def too_small(self, namespace: str, key: str) -> int | None:
        """The token count of a prefix the provider refused as too small, if it did."""

    @abstractmethod
    def mark_too_small(self, namespace: str, key: str, tokens: int) -> None: ...

    @abstractmethod
    def acquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        """Take the right to create the cache for `key` for `ttl` seconds.

        True when `owner` holds it now (newly, or still). A lease whose holder crashed expires after
        `ttl` and can then be taken over, so a dead creator never blocks a prefix for longer.
        """

    @abstractmethod
    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        """Give the lease back (only if `owner` still holds it)."""

    # Files (uploads deduplicated by content) and free-form facts. Not abstract, so a registry written
    # for an older release still loads; the built-in registries implement them all.

    def get_file(self, namespace: str, key: str) -> FileEntry | None:
        """The live upload of the content `key`, if one is recorded."""
        raise NotImplementedError(f"{type(self).__name__} does not record files")

    def find_file(self, namespace: str, name: str) -> FileEntry | None:
        """The upload recorded under the file name ``files/<id>``, if any."""
        raise NotImplementedError(f"{type(self).__name__} does not record files")

    def put_file(self, entry: FileEntry) -> None:
        """Record (or replace) the upload of `entry.key`."""
        raise NotImplementedError(f"{type(self).__name__} does not record files")

    def forget_file(self, namespace: str, key: str, *, name: str | None = None) -> None:
        """Drop the upload of `key`; with `name`, only if it is still that file."""
        raise NotImplementedError(f"{type(self).__name__} does not record files")

    def file_entries(self, namespace: str | None = None) -> list[FileEntry]:
        raise NotImplementedError(f"{type(self).__name__} does not record files")

    def fact(self, namespace: str, kind: str, subject: str) -> int | None:
        """A learned fact (``kind`` such as ``"no_explicit_cache"``, about `subject`, a model), if known."""
        raise NotImplementedError(f"{type(self).__name__} does not record facts")

    def set_fact(self, namespace: str, kind: str, subject: str, value: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not record facts")

    # Async variants. Local registries answer in microseconds, so the defaults call the sync
    # methods inline; a networked registry (Redis) overrides them with a real async client.

    async def aget(self, namespace: str, key: str) -> CacheEntry | None:
        return self.get(namespace, key)

    async def aput(self, entry: CacheEntry) -> None:
        self.put(entry)

    async def aacquire_lease(self, namespace: str, key: str, owner: str, *, ttl: float, now: float) -> bool:
        return self.acquire_lease(namespace, key, owner, ttl=ttl, now=now)

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        self.release_lease(namespace, key, owner)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def describe_error(self, exc: BaseException) -> str:
        """`exc` as one log line that holds no secret of this registry (a networked one masks its URL)."""
        return one_line(exc)


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a provider's message may hold newlines)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


_QUERY_SECRET = re.compile(r"(?i)([?&;][^=&#;\s]*(?:pass|pwd|token|secret|auth)[^=&#;\s]*=)([^&#;\s]*)")


def mask_url(url: str) -> str:
    """`url` with any password (``user:password@``, ``?password=``) replaced by ``***``.

    Works on mistyped URLs too (``redis//:pw@host``, ``redis:/:pw@host``): everything between the
    scheme and the last ``@`` is masked, so a password containing ``/`` or ``@`` never shows.
    """
    masked = url
    if "@" in masked:
        head, _, tail = masked.rpartition("@")
        masked = f"{head[: _userinfo_start(head)]}***@{tail}"
    return _QUERY_SECRET.sub(r"\1***", masked)


def _userinfo_start(head: str) -> int:
    """Where the user information starts in what precedes a URL's last ``@``: after ``//``, else after
    the scheme's ``:``, else at 0."""
    slashes = head.find("//")
    return slashes + 2 if slashes >= 0 else head.find(":") + 1


def _secrets_in(url: str) -> list[str]:
    found: list[str] = []
    if "@" in url:
        head = url.rpartition("@")[0]
        userinfo = head[_userinfo_start(head) :]
        found.append(userinfo.partition(":")[2] or userinfo)
    found.extend(m.group(2) for m in _QUERY_SECRET.finditer(url))
    return [s for secret in found if secret for s in {secret, unquote(secret)}]


def scrub_url(text: str, url: str) -> str:
    """`text` (an exception message) with `url` masked and any password of `url` replaced by ``***``."""
    text = text.replace(url, mask_url(url))
    for secret in sorted(_secrets_in(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
