"""Files as managed resources: each content uploaded once per credential, shared like caches.

`ManagedFiles` is the `FileUploader` behind `ChatGemini` and LlamaIndex `Gemini`. It keeps every upload in
the explicit-cache manager's registry (memory, SQLite or Redis), keyed by the content's SHA-256 and media
type within the credential's namespace, so the same bytes are uploaded once across calls, processes and
hosts:

* single-flight: one worker uploads a content at a time (a lease in the registry, renewed after every
  chunk, so a crashed uploader blocks the others only until the lease runs out); the others wait for the
  record to appear, then wait for the file to be ACTIVE themselves;
* reuse: a recorded file is used while it has more than `FRESH_MARGIN` seconds to live (files live 48
  hours, https://ai.google.dev/gemini-api/docs/files); after that it is uploaded again;
* sources: a path is remembered in the record (so any process on the host can upload it again after
  expiry, once it checked the bytes are still the same); bytes stay with whoever holds them (a request,
  a pinned context, an `UploadedFile`), which is where a re-upload reads them from;
* ownership: the display name of every upload starts with ``cache-integrations:<40 hex of the key>``
  (then the caller's display name), so `list` and `delete_all` touch only this library's files.

A file that vanished server-side (deleted, or expired early) is reported by Gemini as 403 "You do not have
permission to access the File ..."; `forget` drops its record so the next resolve uploads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import FileProcessingFailedError, InvalidRequestError, UploadedFileNotFoundError
from ..media import read_media
from ..messages import MediaPart
from ..providers.gemini_files import File, GeminiFiles, UploadSource, file_name
from . import _forksafe
from ._base import FileEntry
from ._types import DISPLAY_PREFIX, KeyedLocks
from ._uploaded import UploadedFile, as_file, content_key, label, owned_key

if TYPE_CHECKING:  # pragma: no cover
    from .manager import ExplicitCacheManager

__all__ = ["FRESH_MARGIN", "ManagedFiles", "UploadedFile", "content_key"]

logger = logging.getLogger(__name__)

FRESH_MARGIN = 3600.0
"""A recorded file is reused while it has more than this many seconds to live; then it is uploaded again."""
UPLOAD_LEASE_SECONDS = 120.0
"""How long an uploader's claim lasts without progress (it is renewed after every chunk)."""
_MAX_DISPLAY_NAME = 512
_MEMO = 1024  # paths and byte objects whose digest this process remembers
Progress = Callable[[int, int], None]


class ManagedFiles:
    """The registry-backed `FileUploader`: uploads deduplicated by content, re-uploaded after expiry.

    It shares the manager's registry, namespace (credential fingerprint), clock and lease identity.
    `wait_timeout` bounds how long a worker waits for another worker's upload before uploading itself.
    """

    def __init__(
        self,
        manager: ExplicitCacheManager,
        files: GeminiFiles,
        *,
        lease_ttl: float = UPLOAD_LEASE_SECONDS,
        wait_timeout: float | None = None,
        poll: float = 0.05,
    ) -> None:
        self.manager = manager
        self.files = files
        self.lease_ttl = float(lease_ttl)
        self.wait_timeout = files.wait_timeout if wait_timeout is None else float(wait_timeout)
        self.poll = float(poll)
        self._locks = KeyedLocks()
        self._memo_lock = threading.Lock()
        self._path_digests: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._data_digests: OrderedDict[int, tuple[bytes, str]] = OrderedDict()
        self._names: OrderedDict[str, str] = OrderedDict()  # files/<id> -> content key, every name seen here
        self._sources: weakref.WeakValueDictionary[str, UploadedFile] = weakref.WeakValueDictionary()
        self._deleted: set[str] = set()  # keys the caller deleted: never uploaded again behind their back
        self._foreign: dict[str, File] = {}  # files this library did not upload, described once
        _forksafe.register(self)

    def _after_fork(self) -> None:
        """In a forked child: locks of its own (a parent's thread may have held one mid-upload)."""
        self._locks = KeyedLocks()
        self._memo_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ManagedFiles({self.manager.registry!r})"

    # -- registry plumbing ------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return self.manager.namespace

    def _reg(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.manager._reg(method, *args, **kwargs)

    def _remember_name(self, name: str, key: str) -> None:
        with self._memo_lock:
            self._names.pop(name, None)
            self._names[name] = key
            while len(self._names) > _MEMO:
                self._names.popitem(last=False)

    def _key_of(self, name: str) -> str | None:
        with self._memo_lock:
            key = self._names.get(name)
        if key is not None:
            return key
        entry: FileEntry | None = self._reg("find_file", self.namespace, name)
        if entry is None:
            return None
        self._remember_name(name, entry.key)
        return entry.key

    def _fresh(self, key: str) -> FileEntry | None:
        entry: FileEntry | None = self._reg("get_file", self.namespace, key)
        if entry is None or entry.expire_at - self.manager.clock() <= FRESH_MARGIN:
            return None
        self._remember_name(entry.name, key)
        return entry

    def _record(self, key: str, file: File, source: UploadSource, now: float) -> FileEntry:
        lifetime = 48 * 3600.0
        if file.expiration_time is not None and file.create_time is not None:
            lifetime = (file.expiration_time - file.create_time).total_seconds()
        entry = FileEntry(
            namespace=self.namespace,
            key=key,
            name=file.name,
            uri=file.uri,
            mime_type=file.mime_type,
            size=file.size_bytes,
            sha256=file.sha256 or "",
            expire_at=now + lifetime,
            created_at=now,
            state=file.state,
            display_name=file.display_name,
            source_path=os.path.realpath(source.path) if source.path else None,
        )
        self._reg("put_file", entry)
        self._remember_name(file.name, key)
        return entry

    def _activated(self, entry: FileEntry, file: File) -> File:
        if entry.state != file.state:
            self._reg("put_file", replace(entry, state=file.state))
        self._follow(entry.key, file)
        return file

    def _failed(self, entry: FileEntry) -> None:
        self._reg("forget_file", self.namespace, entry.key, name=entry.name)

    def _follow(self, key: str, file: File) -> None:
        handle = self._sources.get(key)
        if handle is not None:
            handle._follow(file)

    # -- digests (each path or byte object hashed once per process) --------------------------------

    def _digest_path(self, path: str, where: str) -> tuple[str, int]:
        try:
            info = os.stat(path)
        except OSError as exc:
            raise InvalidRequestError(f"{where}: cannot read {path!r}: {exc.strerror or exc}") from None
        memo = (os.path.realpath(path), info.st_size, info.st_mtime_ns)
        with self._memo_lock:
            known = self._path_digests.get(memo)
        if known is None:
            known = UploadSource.of(path, where=where).sha256()
            with self._memo_lock:
                self._path_digests[memo] = known
                while len(self._path_digests) > _MEMO:
                    self._path_digests.popitem(last=False)
        return known, info.st_size

    def _digest_data(self, data: bytes) -> str:
        with self._memo_lock:
            known = self._data_digests.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        digest = hashlib.sha256(data).hexdigest()
        with self._memo_lock:
            self._data_digests[id(data)] = (data, digest)  # holding `data` keeps its id from being reused
            while len(self._data_digests) > 64:
                self._data_digests.popitem(last=False)
        return digest

    def _source_of(self, source: UploadSource, where: str) -> tuple[UploadSource, str]:
        """`source` as something that can be read again, and its digest."""
        if source.path is not None:
            return source, self._digest_path(source.path, where)[0]
        if source.data is None:  # a file object: keep its bytes, it may be closed before a re-upload
            with source.reader() as read_at:
                source = UploadSource.of(read_at(0, source.size), where=where)
        assert source.data is not None
        return source, self._digest_data(source.data)

    def _part_source(self, part: MediaPart, where: str) -> UploadSource:
        if part.path is not None:
            return UploadSource.of(part.path, where=where)
        return UploadSource.of(read_media(part, where), where=where)

    def _display(self, key: str, display_name: str | None) -> str:
        name = f"{DISPLAY_PREFIX}{key[:40]}"
        if display_name:
            name = f"{name} {display_name}"
        return name[:_MAX_DISPLAY_NAME]

    # -- obtaining a file for a content: reuse, wait for another worker, or upload ----------------

    def _obtain(
        self, key: str, source: UploadSource, mime: str, display: str | None, progress: Progress | None
    ) -> File:
        with self._locks.sync(key):
            deadline = time.monotonic() + self.wait_timeout
            while True:
                entry = self._fresh(key)
                if entry is not None:
                    ready = self._ready(entry)
                    if ready is not None:
                        return ready
                    continue
                now = self.manager.clock()
                lease = "file:" + key
                owner = self.manager._owner
                if self._reg("acquire_lease", self.namespace, lease, owner, ttl=self.lease_ttl, now=now):
                    try:
                        return self._upload_leased(key, source, mime, display, progress)
                    finally:
                        self._reg("release_lease", self.namespace, lease, owner)
                if time.monotonic() >= deadline:
                    logger.warning(
                        "waited %.0f s for another worker's upload of %s; uploading it here",
                        self.wait_timeout,
                        key[:12],
                    )
                    return self._upload(key, source, mime, display, progress, renew=None)
                time.sleep(self.poll)

    def _ready(self, entry: FileEntry) -> File | None:
        """The recorded file once ACTIVE; None when it vanished meanwhile (its record is dropped)."""
        if entry.state == "ACTIVE":
            file = as_file(entry)
            self._follow(entry.key, file)
            return file
        try:
            return self._activated(entry, self.files.wait_active(entry.name))
        except UploadedFileNotFoundError:
            self._failed(entry)
            return None
        except FileProcessingFailedError:
            self._failed(entry)
            raise

    def _upload_leased(
        self, key: str, source: UploadSource, mime: str, display: str | None, progress: Progress | None
    ) -> File:
        entry = self._fresh(key)  # recorded between our last look and the lease
        if entry is not None and (ready := self._ready(entry)) is not None:
            return ready
        owner = self.manager._owner

        def renew(done: int, total: int) -> None:
            now = self.manager.clock()
            self._reg("acquire_lease", self.namespace, "file:" + key, owner, ttl=self.lease_ttl, now=now)
            if progress is not None:
                progress(done, total)

        return self._upload(key, source, mime, display, progress, renew=renew)

    def _upload(
        self,
        key: str,
        source: UploadSource,
        mime: str,
        display: str | None,
        progress: Progress | None,
        *,
        renew: Progress | None,
    ) -> File:
        uploaded = self.files.upload(
            source, mime_type=mime, display_name=self._display(key, display), progress=renew or progress
        )
        entry = self._record(key, uploaded, source, self.manager.clock())
        try:
            return self._activated(entry, self.files.wait_active(uploaded))
        except FileProcessingFailedError:
            self._failed(entry)
            raise

    # -- async (the same decisions; only the I/O awaits) --------------------------------------------

    async def _aobtain(
        self, key: str, source: UploadSource, mime: str, display: str | None, progress: Progress | None
    ) -> File:
        async with self._locks.aio(key):
            deadline = time.monotonic() + self.wait_timeout
            while True:
                entry = self._fresh(key)
                if entry is not None:
                    ready = await self._aready(entry)
                    if ready is not None:
                        return ready
                    continue
                now = self.manager.clock()
                lease = "file:" + key
                owner = self.manager._owner
                if self._reg("acquire_lease", self.namespace, lease, owner, ttl=self.lease_ttl, now=now):
                    try:
                        entry = self._fresh(key)
                        if entry is not None and (ready := await self._aready(entry)) is not None:
                            return ready
                        return await self._aupload(key, source, mime, display, progress, lease=True)
                    finally:
                        self._reg("release_lease", self.namespace, lease, owner)
                if time.monotonic() >= deadline:
                    logger.warning(
                        "waited %.0f s for another worker's upload of %s; uploading it here",
                        self.wait_timeout,
                        key[:12],
                    )
                    return await self._aupload(key, source, mime, display, progress, lease=False)
                await asyncio.sleep(self.poll)

    async def _aready(self, entry: FileEntry) -> File | None:
        if entry.state == "ACTIVE":
            file = as_file(entry)
            self._follow(entry.key, file)
            return file
        try:
            return self._activated(entry, await self.files.await_active(entry.name))
        except UploadedFileNotFoundError:
            self._failed(entry)
            return None
        except FileProcessingFailedError:
            self._failed(entry)
            raise

    async def _aupload(
        self, key: str, source: UploadSource, mime: str, display: str | None, progress: Progress | None, *, lease: bool
    ) -> File:
        owner = self.manager._owner

        def renew(done: int, total: int) -> None:
            if lease:
                now = self.manager.clock()
                self._reg("acquire_lease", self.namespace, "file:" + key, owner, ttl=self.lease_ttl, now=now)
            if progress is not None:
                progress(done, total)

        uploaded = await self.files.aupload(
            source, mime_type=mime, display_name=self._display(key, display), progress=renew
        )
        entry = self._record(key, uploaded, source, self.manager.clock())
        try:
            return self._activated(entry, await self.files.await_active(uploaded))
        except FileProcessingFailedError:
            self._failed(entry)
            raise

    # -- FileUploader: what GeminiMedia asks ------------------------------------------------------

    def upload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        """The ACTIVE file holding `part`'s bytes: recorded already, or uploaded now (once per content)."""
        source, digest = self._source_of(self._part_source(part, where), where)
        return self._obtain(content_key(digest, mime_type), source, mime_type, part.name, None)

    async def aupload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        source = await asyncio.to_thread(self._part_source, part, where)
        source, digest = await asyncio.to_thread(self._source_of, source, where)
        return await self._aobtain(content_key(digest, mime_type), source, mime_type, part.name, None)

    def manages(self, reference: str) -> bool:
        """Whether `reference` (a file name or URI) is a file this library uploaded (its source is known)."""
        try:
            name = file_name(reference)
        except InvalidRequestError:
            return False
        return self._key_of(name) is not None

    def _reupload_source(self, key: str) -> tuple[UploadSource, str, str | None] | None:
        """Where the content of `key` can be read again: a live handle's bytes or path, or the recorded path
        while it still holds the same bytes. None when neither is at hand (the caller must upload again)."""
        handle = self._sources.get(key)
        if handle is not None and handle._source is not None:
            return handle._source, handle.mime_type, handle.display_name or None
        entry: FileEntry | None = self._reg("get_file", self.namespace, key)
        if entry is None or not entry.source_path:
            return None
        try:
            digest, _ = self._digest_path(entry.source_path, "file")
        except InvalidRequestError:
            return None
        if content_key(digest, entry.mime_type) != key:
            return None  # the file on disk changed since it was uploaded
        return UploadSource.of(entry.source_path), entry.mime_type, label(entry.display_name) or None

    def _current_plan(self, reference: str) -> tuple[str, str] | None:
        try:
            name = file_name(reference)
        except InvalidRequestError:
            return None
        key = self._key_of(name)
        if key is None or key in self._deleted:
            return None
        return name, key

    def describe(self, reference: str) -> File:
        """The file to send for `reference`: for one of ours, the current upload of its content (uploaded
        again if it expired or vanished and its source is at hand); for another's, its ACTIVE resource."""
        found = self._current_plan(reference)
        if found is None:
            return self._describe_foreign(reference)
        name, key = found
        entry = self._fresh(key)
        if entry is not None and (ready := self._ready(entry)) is not None:
            return ready
        again = self._reupload_source(key)
        if again is None:
            return self._describe_foreign(name)
        source, mime, display = again
        return self._obtain(key, source, mime, display, None)

    async def adescribe(self, reference: str) -> File:
        found = self._current_plan(reference)
        if found is None:
            return await self._adescribe_foreign(reference)
        name, key = found
        entry = self._fresh(key)
        if entry is not None and (ready := await self._aready(entry)) is not None:
            return ready
        again = self._reupload_source(key)
        if again is None:
            return await self._adescribe_foreign(name)
        source, mime, display = again
        return await self._aobtain(key, source, mime, display, None)

    def _foreign_known(self, name: str) -> File | None:
        known = self._foreign.get(name)
        if known is None or known.expiration_time is None:
            return known
        if known.expiration_time.timestamp() - self.manager.clock() <= FRESH_MARGIN:
            self._foreign.pop(name, None)
            return None
        return known

    def _describe_foreign(self, reference: str) -> File:
        name = file_name(reference)
        known = self._foreign_known(name)
        if known is None:
            known = self._foreign[name] = self.files.wait_active(name)
        return known

    async def _adescribe_foreign(self, reference: str) -> File:
        name = file_name(reference)
        known = self._foreign_known(name)
        if known is None:
            known = self._foreign[name] = await self.files.await_active(name)
        return known

    def forget(self, reference: str) -> bool:
        """Gemini says the file is gone: drop its record, so the next resolve uploads the content again.
        True when the file was one of ours (worth one retry), False for a file this library cannot replace."""
        try:
            name = file_name(reference)
        except InvalidRequestError:
            return False
        self._foreign.pop(name, None)
        key = self._key_of(name)
        if key is None or key in self._deleted:
            return False
        self._reg("forget_file", self.namespace, key, name=name)
        logger.info("file %s is gone on the server; its content will be uploaded again", name)
        return True

    # -- the public API behind ChatGemini.upload_file / list_files / delete_files -----------------

    def _prepare(
        self, source: Any, mime_type: str | None, display_name: str | None
    ) -> tuple[str, UploadSource, str, str | None]:
        src, mime, name = self.files._prepare(source, mime_type, display_name)
        src, digest = self._source_of(src, "upload_file")
        return content_key(digest, mime), src, mime, name

    def _handle(self, key: str, file: File, source: UploadSource) -> UploadedFile:
        handle = self._sources.get(key)
        if handle is None or handle._source is None:
            handle = UploadedFile(self, key, file, source)
            self._sources[key] = handle
        handle._follow(file)
        self._deleted.discard(key)
        return handle

    def upload_file(
        self,
        source: Any,
        *,
        mime_type: str | None = None,
        display_name: str | None = None,
        progress: Progress | None = None,
    ) -> UploadedFile:
        """Upload a path, bytes or binary file object once (deduplicated by content) and wait until ACTIVE."""
        key, src, mime, name = self._prepare(source, mime_type, display_name)
        self._deleted.discard(key)
        return self._handle(key, self._obtain(key, src, mime, name, progress), src)

    async def aupload_file(
        self,
        source: Any,
        *,
        mime_type: str | None = None,
        display_name: str | None = None,
        progress: Progress | None = None,
    ) -> UploadedFile:
        key, src, mime, name = await asyncio.to_thread(self._prepare, source, mime_type, display_name)
        self._deleted.discard(key)
        return self._handle(key, await self._aobtain(key, src, mime, name, progress), src)

    def delete(self, handle: UploadedFile) -> None:
        self._deleted.add(handle.key)
        with contextlib.suppress(UploadedFileNotFoundError):
            self.files.delete(handle.name)
        self._reg("forget_file", self.namespace, handle.key)

    async def adelete(self, handle: UploadedFile) -> None:
        self._deleted.add(handle.key)
        with contextlib.suppress(UploadedFileNotFoundError):
            await self.files.adelete(handle.name)
        self._reg("forget_file", self.namespace, handle.key)

    def list(self) -> list[File]:
        """The live files this library uploaded under this credential (any process); others' are left out."""
        return [f for f in self.files.list() if owned_key(f.display_name) is not None]

    def delete_all(self) -> int:
        """Delete every live file this library uploaded under this credential; returns how many."""
        deleted = 0
        for file in self.list():
            try:
                self.files.delete(file.name)
                deleted += 1
            except UploadedFileNotFoundError:
                pass
        for entry in self._reg("file_entries", self.namespace):
            self._reg("forget_file", self.namespace, entry.key, name=entry.name)
            self._deleted.add(entry.key)
        return deleted
