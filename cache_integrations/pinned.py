"""Pinned contexts: a prefix (system instruction, documents, files, tools) held in one explicit cache.

`context_messages` turns what a caller hands to ``cache_context`` (text, paths, bytes, uploaded files,
messages, or a list mixing them) into neutral messages; `PinnedSession` is the state both frameworks'
pinned chat models share: the prefix, the cache serving it, whether the caller deleted it. It is a
`ChatProvider`, so LangChain's `PinnedContext` and LlamaIndex's pinned `Gemini` are ordinary chat
models of their framework whose every call is the prefix plus the caller's messages:

* every media part of the prefix goes through the Files API (the cache holds ``fileData`` parts) and
  is uploaded again when its file expired or vanished; the cache is recreated when it is gone;
* the cache is created whatever ``cache_mode`` says, and a failure to create it is raised, never
  answered by quietly sending the whole context inline;
* after `delete()` a call raises `PinnedContextDeletedError` unless the context was made with
  ``recreate=True`` (then the next call creates the cache again).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .errors import CachedContentNotFoundError, InvalidRequestError, PinnedContextDeletedError
from .explicit import CacheEntry, CacheHandle, CacheUse
from .explicit.files import UploadedFile
from .gemini_chat import GeminiChat
from .media import kind_of_mime, mime_from_name, sniff_mime
from .messages import ChatRequest, ChatResponse, ImagePart, MediaPart, Message, Part, StreamChunk, TextPart

__all__ = [
    "ContextItem",
    "PinnedControls",
    "PinnedSession",
    "context_messages",
    "context_part",
    "uploaded_part",
]

ContextItem = str | os.PathLike[str] | bytes | bytearray | memoryview | UploadedFile | Part | Message
"""What `cache_context` takes: text, a path, bytes, an uploaded file, a neutral part or message."""


def uploaded_part(file: UploadedFile) -> MediaPart:
    """A `MediaPart` referring to an uploaded file (its kind from its media type)."""
    return MediaPart(
        kind_of_mime(file.mime_type), mime_type=file.mime_type, file_uri=file.uri, name=file.display_name or None
    )


def context_part(item: Any, where: str) -> Part:
    """One non-message item of `cache_context` content as a part (raises naming `where` when it cannot be)."""
    if isinstance(item, str):
        return TextPart(item)
    if isinstance(item, (TextPart, ImagePart, MediaPart)):
        return item
    if isinstance(item, UploadedFile):
        return uploaded_part(item)
    if isinstance(item, os.PathLike):
        path = os.fspath(item)
        if not isinstance(path, str):
            raise InvalidRequestError(f"{where}: a path must be text, got {type(path).__name__}")
        mime = mime_from_name(path)
        if mime is None:
            try:
                with open(path, "rb") as f:
                    mime = sniff_mime(f.read(16))
            except OSError as exc:
                raise InvalidRequestError(f"{where}: cannot read {path!r}: {exc.strerror or exc}") from None
        if mime is None:
            raise InvalidRequestError(
                f"{where}: cannot tell the media type of {path!r}; upload it with upload_file(path, mime_type=...) "
                "and pass the uploaded file"
            )
        return MediaPart(kind_of_mime(mime), mime_type=mime, path=path, name=os.path.basename(path))
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise InvalidRequestError(f"{where}: the bytes are empty")
        mime = sniff_mime(data)
        if mime is None:
            raise InvalidRequestError(
                f"{where}: cannot tell the media type of the bytes; upload them with upload_file(data, "
                "mime_type=...) and pass the uploaded file"
            )
        return MediaPart(kind_of_mime(mime), mime_type=mime, data=data)
    raise InvalidRequestError(
        f"{where}: expected text (str), a path (pathlib.Path), bytes, an uploaded file or a message, "
        f"got {type(item).__name__}"
    )


def context_messages(content: Any, *, system: str | None = None, where: str = "content") -> tuple[Message, ...]:
    """The prefix `cache_context` pins, as neutral messages: `system` first, then `content`.

    `content` is one item or a list of them: a `str` is text (a path must be a `pathlib.Path`), bytes
    are a document, image, audio or video told by their first bytes, an `UploadedFile` is that file, a
    `Message` is kept as it is. Consecutive non-message items form one user message. The last
    non-system message is marked as the cache point.
    """
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError(f"system: expected a string, got {type(system).__name__}")
    out: list[Message] = [Message("system", system)] if system else []
    if content is None:
        items: Sequence[Any] = ()
    elif isinstance(content, (list, tuple)):
        items = content
    else:
        items = (content,)
    pending: list[Part] = []

    def flush() -> None:
        if pending:
            only_text = all(isinstance(p, TextPart) for p in pending) and len(pending) == 1
            body: str | tuple[Part, ...] = pending[0].text if only_text else tuple(pending)  # type: ignore[union-attr]
            out.append(Message("user", body))
            pending.clear()

    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(content, (list, tuple)) else where
        if isinstance(item, Message):
            flush()
            out.append(item)
        else:
            pending.append(context_part(item, at))
    flush()
    last = max((i for i, m in enumerate(out) if m.role != "system"), default=None)
    if last is None:
        if not out:
            raise InvalidRequestError(f"{where}: nothing to cache; give text, files or messages (or system=...)")
    elif not out[last].cache_point:
        out[last] = replace(out[last], cache_point=True)
    return tuple(out)


class PinnedSession:
    """The shared state of a pinned context, and the `ChatProvider` its chat model sends through.

    `prefix` holds the model, the pinned messages (media still local: uploaded on `pin`), tools and
    tool choice. `keep` are objects whose life must match the context's (uploaded-file handles, whose
    sources allow re-uploading after expiry).
    """

    def __init__(
        self,
        chat: GeminiChat,
        prefix: ChatRequest,
        *,
        recreate: bool = False,
        layout: bool = True,
        keep: Sequence[object] = (),
        on_handle: Callable[[CacheHandle], None] | None = None,
    ) -> None:
        self.gemini = chat
        self.on_handle = on_handle
        self.prefix = prefix
        self.recreate = recreate
        self.layout = layout
        self._keep = tuple(keep)
        self._handle: CacheHandle | None = None
        self._last: CacheHandle | None = None  # the cache `delete()` deleted, still described afterwards
        self._resolved: ChatRequest | None = None
        self._names: dict[str, None] = {}  # every cache this context was served from (deleted together)
        self._deleted: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        name = self._handle.name if self._handle is not None else None
        return f"PinnedSession(model={self.prefix.model!r}, cache={name!r}, deleted={self._deleted is not None})"

    # -- what adapters read through their client ---------------------------------------------------

    @property
    def manager(self) -> Any:
        return self.gemini.manager

    @property
    def media(self) -> Any:
        return self.gemini.media

    @property
    def files(self) -> Any:
        return self.gemini.files

    @property
    def provider(self) -> str:
        return self.gemini.provider

    @property
    def price_provider(self) -> str:
        return self.gemini.price_provider

    @property
    def resolved_prefix(self) -> ChatRequest | None:
        """The prefix as last pinned, its media replaced by uploaded files (None before `pin`)."""
        return self._resolved

    @property
    def pinned(self) -> bool:
        return self._handle is not None

    @property
    def deleted(self) -> bool:
        return self._deleted is not None

    # -- pinning -----------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._deleted is None:
            return
        if not self.recreate:
            raise PinnedContextDeletedError(
                f"the pinned context's cache {self._deleted} was deleted with delete(); create a new one with "
                "cache_context(...), or pass recreate=True to cache_context to have it created again on use",
                name=self._deleted,
            )
        self._deleted = None

    def check(self, request: ChatRequest) -> None:
        """Raise before anything is sent: a deleted context, bad media in `request`."""
        self._check()
        self.gemini.media.check(request)

    def _adopt(self, handle: CacheHandle, resolved: ChatRequest | None) -> CacheHandle:
        with self._lock:
            self._handle = handle
            if resolved is not None:
                self._resolved = resolved
            self._names[handle.name] = None
        if self.on_handle is not None:
            self.on_handle(handle)
        return handle

    def pin(self) -> CacheHandle:
        """Upload the prefix's media and create (or find) its cache now; returns the cache's handle."""
        self._check()
        resolved = self.gemini.media.resolve(self.prefix, upload_all=len(self.prefix.messages))
        return self._adopt(self.gemini.manager.pin(resolved, layout=self.layout), resolved)

    async def apin(self) -> CacheHandle:
        self._check()
        resolved = await self.gemini.media.aresolve(self.prefix, upload_all=len(self.prefix.messages))
        return self._adopt(await self.gemini.manager.apin(resolved, layout=self.layout), resolved)

    @property
    def handle(self) -> CacheHandle:
        """The cache serving the prefix now (pinned on first use); after `delete()`, the deleted one (only a
        call creates it again, when the context allows it)."""
        handle = self._handle
        if handle is not None:
            return handle
        if self._deleted is not None and self._last is not None:
            return self._last
        return self.pin()

    def _entry_named(self, name: str) -> CacheEntry | None:
        manager = self.gemini.manager
        return next((e for e in manager._reg("entries", manager.namespace) if e.name == name), None)

    def _observe(self, use: CacheUse | None, own: bool) -> None:
        """Remember the cache a call was served from (deleted with the context); when it holds the pinned
        prefix itself (`own`: no other tools bound) and is new (recreated), it becomes the handle."""
        if use is None:
            return
        with self._lock:
            known = self._handle is not None and self._handle.name == use.name
            self._names[use.name] = None
        if known or not own:
            return
        entry = self._entry_named(use.name)
        if entry is not None:
            self._adopt(CacheHandle(self.gemini.manager, entry, self.prefix, created=use.created), None)

    # -- ChatProvider: every call is the prefix plus the caller's turns ------------------------------

    def _merged(self, request: ChatRequest) -> ChatRequest:
        if request.tools:
            tools, choice = request.tools, request.tool_choice
        else:
            tools, choice = self.prefix.tools, self.prefix.tool_choice
        return replace(request, messages=(*self.prefix.messages, *request.messages), tools=tools, tool_choice=choice)

    def _own(self, request: ChatRequest) -> bool:
        return not request.tools or (request.tools, request.tool_choice) == (self.prefix.tools, self.prefix.tool_choice)

    def chat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        self._check()
        response = self.gemini.chat(self._merged(request), layout=layout, pinned_messages=len(self.prefix.messages))
        self._observe(response.cache, self._own(request))
        return response

    async def achat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        self._check()
        merged = self._merged(request)
        response = await self.gemini.achat(merged, layout=layout, pinned_messages=len(self.prefix.messages))
        self._observe(response.cache, self._own(request))
        return response

    def stream(self, request: ChatRequest, *, layout: bool = True) -> Iterator[StreamChunk]:
        self._check()
        merged = self._merged(request)
        for chunk in self.gemini.stream(merged, layout=layout, pinned_messages=len(self.prefix.messages)):
            if chunk.final:
                self._observe(chunk.cache, self._own(request))
            yield chunk

    async def astream(self, request: ChatRequest, *, layout: bool = True) -> AsyncIterator[StreamChunk]:
        self._check()
        merged = self._merged(request)
        async for chunk in self.gemini.astream(merged, layout=layout, pinned_messages=len(self.prefix.messages)):
            if chunk.final:
                self._observe(chunk.cache, self._own(request))
            yield chunk

    # -- the caller's controls ---------------------------------------------------------------------

    def refresh(self, ttl_seconds: float | None = None) -> CacheHandle:
        return self.handle.refresh(ttl_seconds)

    async def arefresh(self, ttl_seconds: float | None = None) -> CacheHandle:
        handle = self._handle if self._handle is not None else await self.apin()
        return await handle.arefresh(ttl_seconds)

    def _to_delete(self) -> tuple[list[CacheEntry], list[str], str]:
        with self._lock:
            names = list(self._names)
            last = self._handle.name if self._handle is not None else (names[-1] if names else "")
            self._names.clear()
            self._last, self._handle = self._handle or self._last, None
        manager = self.gemini.manager
        entries = [e for e in manager._reg("entries", manager.namespace) if e.name in names]
        orphans = [n for n in names if n not in {e.name for e in entries}]
        return entries, orphans, last

    def delete(self) -> None:
        """Delete every cache this context was served from (storage stops being billed)."""
        entries, orphans, last = self._to_delete()
        manager = self.gemini.manager
        for entry in entries:
            manager._delete_entry(entry)
        for name in orphans:
            with contextlib.suppress(CachedContentNotFoundError):
                manager.client.delete_cached_content(name)
        self._deleted = last or "(never created)"

    async def adelete(self) -> None:
        entries, orphans, last = self._to_delete()
        manager = self.gemini.manager
        for entry in entries:
            await manager._adelete_entry(entry)
        for name in orphans:
            with contextlib.suppress(CachedContentNotFoundError):
                await manager.client.adelete_cached_content(name)
        self._deleted = last or "(never created)"

    @property
    def expires_in(self) -> float:
        """Seconds until the cache expires (negative once it has), on the manager's clock."""
        expire_time: datetime = self.handle.expire_time
        return expire_time.timestamp() - float(self.gemini.manager.clock())


class PinnedControls:
    """What both frameworks' pinned chat models offer on top of being chat models (a mixin; the model
    keeps its `PinnedSession` in ``_session``): the cache's description, refresh, delete, and the
    context-manager protocol (``with llm.cache_context(...) as doc:`` deletes the cache on exit)."""

    @property
    def session(self) -> PinnedSession:
        """The state shared with the model's client: prefix, cache in use, deleted or not."""
        session: PinnedSession = self._session  # type: ignore[attr-defined]
        return session

    @property
    def handle(self) -> CacheHandle:
        """The cache serving the context now (created on first use when the context was built directly)."""
        return self.session.handle

    @property
    def cache_name(self) -> str:
        """The provider's cache name (``cachedContents/...``)."""
        return self.session.handle.name

    @property
    def tokens(self) -> int:
        """Tokens held by the cache, as Gemini counted them when it created it."""
        return self.session.handle.tokens

    @property
    def expire_time(self) -> datetime:
        """When the cache expires (UTC); calls extend it while it is in use."""
        return self.session.handle.expire_time

    @property
    def created(self) -> bool:
        """Whether pinning created the cache (False: an identical live one was found and shared)."""
        return self.session.handle.created

    @property
    def expires_in(self) -> float:
        """Seconds until the cache expires (negative once it has)."""
        return self.session.expires_in

    @property
    def deleted(self) -> bool:
        """Whether `delete()` was called (and no call has recreated the cache since)."""
        return self.session.deleted

    def pin(self) -> CacheHandle:
        """Upload the context's media and create (or find) its cache now."""
        return self.session.pin()

    async def apin(self) -> CacheHandle:
        return await self.session.apin()

    def refresh(self, ttl_seconds: float | None = None) -> Any:
        """Extend the cache to `ttl_seconds` (default: the model's `cache_ttl`) from now; returns self."""
        self.session.refresh(ttl_seconds)
        return self

    async def arefresh(self, ttl_seconds: float | None = None) -> Any:
        await self.session.arefresh(ttl_seconds)
        return self

    def delete(self) -> None:
        """Delete the cache now (storage stops being billed), and any cache this context created for tools
        bound later; using the context afterwards raises unless it was made with ``recreate=True``."""
        self.session.delete()

    async def adelete(self) -> None:
        await self.session.adelete()

    def __enter__(self) -> Any:
        self.session.handle  # noqa: B018 - pinned now, so the block's calls all read it
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.delete()

    async def __aenter__(self) -> Any:
        if not self.session.pinned:
            await self.session.apin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.adelete()
