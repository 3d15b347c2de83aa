"""`GeminiChat`: what `ChatGemini` and LlamaIndex `Gemini` send their requests through.

One `ChatProvider` in front of the explicit-cache manager that also owns the request's media:

1. large media (and every media part of a pinned prefix) goes to the Files API through the
   registry-backed `ManagedFiles` (one upload per content across processes; references to files it
   uploaded are replaced by the current upload, uploaded again once they expired);
2. the manager sends the request, against its prefix's cache when there is (or should be) one;
3. when Gemini answers that a file of the request or of its cache is gone (403 "You do not have
   permission to access the File ..."), the file is forgotten, the content uploaded again, the cache
   recreated and the request sent once more: invisible to the caller, as for a vanished cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from .errors import UploadedFileNotFoundError
from .explicit import ExplicitCacheManager
from .explicit.files import ManagedFiles
from .messages import ChatRequest, ChatResponse, StreamChunk
from .providers.gemini_media import GeminiMedia

__all__ = ["GeminiChat"]


class GeminiChat:
    """Gemini requests with managed files and managed caches (sync and async, invoke and stream).

    `pinned_messages` (on every call): the first that many messages are a pinned context's prefix; their
    media is uploaded whatever its size and their cache is created whatever the policy (`pinned`).
    """

    def __init__(self, manager: ExplicitCacheManager, media: GeminiMedia, files: ManagedFiles) -> None:
        self.manager = manager
        self.media = media
        self.files = files

    def __repr__(self) -> str:
        return f"GeminiChat(manager={type(self.manager).__name__}, registry={self.manager.registry!r})"

    @property
    def provider(self) -> str:
        return self.manager.provider

    @property
    def price_provider(self) -> str:
        return self.manager.price_provider

    def check(self, request: ChatRequest) -> None:
        """Raise for media that cannot be sent, before anything is (see `GeminiMedia.check`)."""
        self.media.check(request)

    def _replaceable(self, exc: UploadedFileNotFoundError) -> bool:
        return exc.file_name is not None and self.media.uploader.forget(exc.file_name)

    def chat(self, request: ChatRequest, *, layout: bool = True, pinned_messages: int = 0) -> ChatResponse:
        pinned = pinned_messages > 0
        resolved = self.media.resolve(request, upload_all=pinned_messages)
        try:
            return self.manager.chat(resolved, layout=layout, pinned=pinned)
        except UploadedFileNotFoundError as exc:
            if not self._replaceable(exc):
                raise
        resolved = self.media.resolve(request, upload_all=pinned_messages)
        return self.manager.chat(resolved, layout=layout, pinned=pinned)

    async def achat(self, request: ChatRequest, *, layout: bool = True, pinned_messages: int = 0) -> ChatResponse:
        pinned = pinned_messages > 0
        resolved = await self.media.aresolve(request, upload_all=pinned_messages)
        try:
            return await self.manager.achat(resolved, layout=layout, pinned=pinned)
        except UploadedFileNotFoundError as exc:
            if not self._replaceable(exc):
                raise
        resolved = await self.media.aresolve(request, upload_all=pinned_messages)
        return await self.manager.achat(resolved, layout=layout, pinned=pinned)

    def stream(self, request: ChatRequest, *, layout: bool = True, pinned_messages: int = 0) -> Iterator[StreamChunk]:
        """Chunks of the answer; a gone file is noticed when the stream opens, before any output."""
        pinned = pinned_messages > 0
        resolved = self.media.resolve(request, upload_all=pinned_messages)
        chunks = self.manager.stream(resolved, layout=layout, pinned=pinned)
        try:
            first = next(chunks, None)
        except UploadedFileNotFoundError as exc:
            if not self._replaceable(exc):
                raise
            resolved = self.media.resolve(request, upload_all=pinned_messages)
            chunks = self.manager.stream(resolved, layout=layout, pinned=pinned)
            first = next(chunks, None)
        if first is not None:
            yield first
            yield from chunks

    async def astream(
        self, request: ChatRequest, *, layout: bool = True, pinned_messages: int = 0
    ) -> AsyncIterator[StreamChunk]:
        pinned = pinned_messages > 0
        resolved = await self.media.aresolve(request, upload_all=pinned_messages)
        chunks = self.manager.astream(resolved, layout=layout, pinned=pinned)
        try:
            first = await anext(chunks, None)
        except UploadedFileNotFoundError as exc:
            if not self._replaceable(exc):
                raise
            resolved = await self.media.aresolve(request, upload_all=pinned_messages)
            chunks = self.manager.astream(resolved, layout=layout, pinned=pinned)
            first = await anext(chunks, None)
        if first is None:
            return
        yield first
        async for chunk in chunks:
            yield chunk
