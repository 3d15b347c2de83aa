"""The file and cache controls both frameworks' Gemini models offer, written once.

`GeminiControls` is mixed into LangChain's `ChatGemini` and LlamaIndex's `Gemini`: each holds its
`GeminiChat` in ``_gemini`` (and the client a call goes through in ``_client``); everything here only
forwards to it. Importing this module loads nothing of the Gemini stack (it is imported when a model is
built), so importing a chat model stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .messages import ChatRequest

if TYPE_CHECKING:
    from .explicit import ExplicitCacheManager, UploadedFile
    from .gemini_chat import GeminiChat
    from .providers.gemini import CachedContent
    from .providers.gemini_files import File, GeminiFiles
    from .providers.gemini_media import GeminiMedia

__all__ = ["GeminiControls", "Progress"]

Progress = Callable[[int, int], None]
"""Called with (bytes sent, total bytes) after every uploaded chunk."""


class GeminiControls:
    """Files API uploads, managed caches and media checks of a model holding a `GeminiChat` in ``_gemini``."""

    if TYPE_CHECKING:  # declared by the model classes (pydantic fields and private attributes)
        _gemini: GeminiChat
        _client: Any
        thinking_budget: int | None

    @property
    def cache_manager(self) -> ExplicitCacheManager:
        """The manager of this model's explicit caches (registry, policy, TTL)."""
        return self._gemini.manager

    @property
    def files(self) -> GeminiFiles:
        """The Gemini Files API with this model's key and clients: upload, get, list, delete, wait_active."""
        return self._gemini.media.files

    @property
    def media(self) -> GeminiMedia:
        """How this model's requests move large media to the Files API (threshold, uploader)."""
        return self._gemini.media

    def _extra_body(self) -> dict[str, Any]:
        from .providers.gemini import gemini_options

        return gemini_options(thinking_budget=self.thinking_budget)

    def _resolve(self, request: ChatRequest) -> ChatRequest:
        self._client.check(request)  # bad media fails here, before a stream opens
        return request

    async def _aresolve(self, request: ChatRequest) -> ChatRequest:
        self._client.check(request)
        return request

    # -- files ------------------------------------------------------------------------------------

    def upload_file(
        self,
        source: Any,
        mime_type: str | None = None,
        display_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> UploadedFile:
        """Upload a file through the Files API once and wait until it is ACTIVE; returns its handle.

        `source` is a path (`str` or `pathlib.Path`; the media type comes from its extension), bytes or
        a binary file object. The same content is uploaded once per API key, across calls and every
        process sharing `cache_registry`; after its 48 hours it is uploaded again when a request or a
        cache needs it. `progress(sent, total)` is called after every chunk.
        """
        return self._gemini.files.upload_file(source, mime_type=mime_type, display_name=display_name, progress=progress)

    async def aupload_file(
        self,
        source: Any,
        mime_type: str | None = None,
        display_name: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> UploadedFile:
        """`upload_file` for asyncio."""
        return await self._gemini.files.aupload_file(
            source, mime_type=mime_type, display_name=display_name, progress=progress
        )

    def list_files(self) -> list[File]:
        """Live Files API files this library uploaded under this key (never anyone else's)."""
        return self._gemini.files.list()

    def delete_files(self) -> int:
        """Delete every live file this library uploaded under this key; returns how many."""
        return self._gemini.files.delete_all()

    # -- caches -----------------------------------------------------------------------------------

    def list_caches(self) -> list[CachedContent]:
        """Live Gemini caches this library created under this key."""
        return self.cache_manager.list_caches()  # type: ignore[return-value]

    def delete_caches(self) -> int:
        """Delete every live cache this library created under this key; returns how many."""
        return self.cache_manager.delete_all()
