"""`ChatGemini`: a drop-in LangChain chat model for Gemini that manages explicit context caches and files.

The system instruction, tools, tool config and the turns up to the last `cache_control` marker are
kept in a Gemini `cachedContents` resource that the model creates once, reuses, extends while in use
and recreates if it vanishes; requests then carry only the new turns. Large media goes through the
Files API once per content (shared by every process using the same registry) and is uploaded again
after it expires. `cache_context` pins a context (text, PDFs, videos, ...) and returns a chat model
bound to its cache. See `cache_integrations.explicit.ExplicitCacheManager` for the cache policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Self

from langchain_core.utils import from_env, secret_from_env
from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, model_validator

from ..explicit._types import CacheMode
from ..gemini_controls import GeminiControls
from ..providers._endpoints import DEFAULT_FILE_UPLOAD_THRESHOLD, GEMINI_BASE_URL
from ..validation import GEMINI_LIMITS, SamplingLimits
from ._base import CachingChatModel

# The Gemini stack (httpx, the explicit-cache manager and registries, the Files API, pinned contexts) is
# imported when a model is built or a method needs it, so importing ChatGemini costs what ChatGLM costs.
if TYPE_CHECKING:
    from ..gemini_chat import GeminiChat
    from .pinned import PinnedContext

__all__ = ["ChatGemini", "PinnedContext"]

# The GeminiChat a pinned context built by `cache_context` shares with the model that built it.
_SHARED: ContextVar[GeminiChat | None] = ContextVar("cache_integrations_shared_gemini_chat", default=None)


class ChatGemini(GeminiControls, CachingChatModel):
    """Gemini chat model with explicit context caching and Files API uploads managed end to end.

    Usage reports ``input_token_details.cache_read`` (Gemini's ``cachedContentTokenCount``; inclusive
    in ``input_tokens``) and, on the call that created a cache, ``cache_creation``;
    ``response_metadata["cache"]`` names the cache used and the storage it booked.

    Example:
        ```python
        llm = ChatGemini(model="gemini-2.5-flash")  # key from GEMINI_API_KEY or GOOGLE_API_KEY
        with llm.cache_context(Path("report.pdf"), system="Answer from the report only.") as doc:
            for q in questions:
                print(doc.invoke(q).content)   # a chat model: stream, batch, tools, LCEL, agents
        ```
    """

    model: str = Field(default="gemini-2.5-flash", validation_alias=AliasChoices("model", "model_name"))
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(["GEMINI_API_KEY", "GOOGLE_API_KEY"], default=None),
        validation_alias=AliasChoices("api_key", "google_api_key"),
    )
    """API key; read from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` when not given."""
    base_url: str = Field(default_factory=from_env("GEMINI_BASE_URL", default=GEMINI_BASE_URL))
    cache_mode: CacheMode = "auto"
    """``auto`` (create a cache once it pays for itself), ``always`` or ``off``."""
    cache_ttl: float = 3600.0
    """Seconds a new cache lives; caches in use are extended before they expire (positive, finite)."""
    cache_registry: Any = Field(default=None, exclude=True, repr=False)  # a Redis URL may hold a password
    """Where caches and uploaded files are remembered: ``"sqlite"`` (default, shared by the host's
    processes), ``"sqlite:///path"``, ``"redis://host:6379/0"``, ``"memory"``, or a `CacheRegistry`."""
    thinking_budget: int | None = None
    """Gemini 2.5+ thinking budget in tokens (0 disables thinking on Flash)."""
    file_upload_threshold: int = Field(default=DEFAULT_FILE_UPLOAD_THRESHOLD, ge=0)
    """Bytes above which an image, document, audio or video part is uploaded through the Files API
    and sent as ``fileData`` instead of inline (PDFs above 50 MB always are). The default, 50 MB,
    is the largest part Gemini takes inline for every media type (requests: 100 MB, PDFs: 50 MB).
    Read when the model is built; `media.threshold` changes it afterwards."""

    _ls_provider: ClassVar[str] = "google_genai"
    _gemini: GeminiChat = PrivateAttr()
    _limits: ClassVar[SamplingLimits] = GEMINI_LIMITS

    @model_validator(mode="after")
    def _connect(self) -> Self:
        from ..clients import gemini_chat  # the HTTP stack (httpx) is imported when a model is built

        shared = _SHARED.get()
        if shared is not None:
            self._gemini = shared
        else:
            self._gemini = gemini_chat(
                owner="ChatGemini",
                file_upload_threshold=self.file_upload_threshold,
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
                deadline=self.deadline,
                http_client=self.http_client,
                async_http_client=self.http_async_client,
                default_headers=self.default_headers,
                cache_mode=self.cache_mode,
                cache_ttl=self.cache_ttl,
                cache_registry=self.cache_registry,
            )
        self._client = self._gemini
        self._bind_client()
        return self

    def _bind_client(self) -> None:
        """Subclasses put their own client in front of the shared `GeminiChat` (a pinned context's session)."""

    @property
    def _llm_type(self) -> str:
        return "gemini-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "GEMINI_API_KEY"}

    # -- explicit control -------------------------------------------------------------------------

    def _pinned(
        self, content: Any, system: str | None, tools: Sequence[Any] | None, tool_choice: Any, recreate: bool
    ) -> PinnedContext:
        from .pinned import pinned_context

        return pinned_context(self, content, system, tools, tool_choice, recreate)

    def cache_context(
        self,
        content: Any = None,
        *,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        recreate: bool = False,
    ) -> PinnedContext:
        """Pin a context in a Gemini cache now and return a chat model bound to it.

        `content` is text, a path (`pathlib.Path`: a PDF, a video, an image, ...), bytes, an
        `UploadedFile`, LangChain messages or content blocks, or a list mixing them; `system` and
        `tools` are cached with it. Media goes through the Files API (the cache holds ``fileData``).
        The returned `PinnedContext` is a `BaseChatModel`: ``invoke(question)``, stream, batch, async,
        tools, structured output, LCEL (``prompt | doc``) and agents all send only the new turns. Use it
        as a context manager to delete the cache on exit; after `delete()` using it raises, unless
        `recreate` is True (then the next call creates the cache again).
        """
        pinned = self._pinned(content, system, tools, tool_choice, recreate)
        pinned.pin()
        return pinned

    async def acache_context(
        self,
        content: Any = None,
        *,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        recreate: bool = False,
    ) -> PinnedContext:
        """`cache_context` for asyncio (uploads and cache creation awaited)."""
        pinned = self._pinned(content, system, tools, tool_choice, recreate)
        await pinned.apin()
        return pinned


def __getattr__(name: str) -> Any:
    # `PinnedContext` (and the prefix builder) moved to `.pinned`, which imports the explicit-cache stack.
    if name in ("PinnedContext", "pinned_prefix"):
        from . import pinned

        return getattr(pinned, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
