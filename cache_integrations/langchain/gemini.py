"""`ChatGemini`: a drop-in LangChain chat model for Gemini that manages explicit context caches.

The system instruction, tools, tool config and the turns up to the last `cache_control` marker are
kept in a Gemini `cachedContents` resource that the model creates once, reuses, extends while in use
and recreates if it vanishes; requests then carry only the new turns. See
`cache_integrations.explicit.ExplicitCacheManager` for the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Self

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, model_validator

from ..clients import gemini_client
from ..explicit import CacheHandle, CacheMode, ExplicitCacheManager
from ..messages import ChatRequest, tool_choice_from_spec
from ..providers.gemini import GEMINI_BASE_URL, CachedContent, GeminiProvider, gemini_options
from ..providers.gemini_files import GeminiFiles
from ..providers.gemini_media import DEFAULT_FILE_UPLOAD_THRESHOLD, GeminiMedia
from ._base import CachingChatModel
from ._convert import messages_from_langchain, tool_from_langchain

__all__ = ["ChatGemini", "PinnedContext"]

_CACHE_POINT = {"cache_control": {"type": "ephemeral"}}


class PinnedContext:
    """A long context pinned in a Gemini cache, ready to prefix your questions.

    `messages` are the LangChain messages that form the cached prefix (the last one carries the
    cache point); `llm` is the model with the pinned tools bound. `invoke(question)` sends
    ``[*messages, HumanMessage(question)]`` through `llm`.
    """

    def __init__(self, handle: CacheHandle, messages: list[BaseMessage], llm: Runnable[LanguageModelInput, AIMessage]):
        self.handle = handle
        self.messages = messages
        self.llm = llm

    name = property(lambda self: self.handle.name, doc="The provider's cache name (cachedContents/...).")
    tokens = property(lambda self: self.handle.tokens, doc="Tokens held by the cache.")
    expire_time = property(lambda self: self.handle.expire_time, doc="When the cache expires (UTC).")
    created = property(lambda self: self.handle.created, doc="Whether pinning created it (or found it).")

    def __repr__(self) -> str:
        return f"PinnedContext(name={self.name!r}, tokens={self.tokens}, expire_time={self.expire_time.isoformat()!r})"

    def invoke(self, question: str | BaseMessage, **kwargs: Any) -> AIMessage:
        ask = question if isinstance(question, BaseMessage) else HumanMessage(question)
        return self.llm.invoke([*self.messages, ask], **kwargs)

    async def ainvoke(self, question: str | BaseMessage, **kwargs: Any) -> AIMessage:
        ask = question if isinstance(question, BaseMessage) else HumanMessage(question)
        return await self.llm.ainvoke([*self.messages, ask], **kwargs)

    def refresh(self, ttl_seconds: float | None = None) -> PinnedContext:
        self.handle.refresh(ttl_seconds)
        return self

    def delete(self) -> None:
        self.handle.delete()

    @property
    def expires_in(self) -> float:
        """Seconds until the cache expires (negative once it has)."""
        expire_time: datetime = self.handle.expire_time
        return (expire_time - datetime.now(expire_time.tzinfo)).total_seconds()


class ChatGemini(CachingChatModel):
    """Gemini chat model with explicit context caching managed end to end.

    Usage reports ``input_token_details.cache_read`` (Gemini's ``cachedContentTokenCount``; inclusive
    in ``input_tokens``) and, on the call that created a cache, ``cache_creation``;
    ``response_metadata["cache"]`` names the cache used and the storage it booked.

    Example:
        ```python
        llm = ChatGemini(model="gemini-2.5-flash")  # key from GEMINI_API_KEY or GOOGLE_API_KEY
        doc = llm.cache_context(report_text, system="Answer from the report only.")
        for q in questions:
            print(doc.invoke(q).content)
        doc.delete()
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
    """Seconds a new cache lives; caches in use are extended before they expire."""
    cache_registry: Any = Field(default=None, exclude=True, repr=False)  # a Redis URL may hold a password
    """Where caches are remembered: ``"sqlite"`` (default, shared by the host's processes),
    ``"sqlite:///path"``, ``"redis://host:6379/0"``, ``"memory"``, or a `CacheRegistry`."""
    thinking_budget: int | None = None
    """Gemini 2.5+ thinking budget in tokens (0 disables thinking on Flash)."""
    file_upload_threshold: int = Field(default=DEFAULT_FILE_UPLOAD_THRESHOLD, ge=0)
    """Bytes above which an image, document, audio or video part is uploaded through the Files API
    and sent as ``fileData`` instead of inline (PDFs above 50 MB always are). The default, 50 MB,
    is the largest part Gemini takes inline for every media type (requests: 100 MB, PDFs: 50 MB).
    Read when the model is built; `media.threshold` changes it afterwards."""

    _ls_provider: ClassVar[str] = "google_genai"
    _media: GeminiMedia = PrivateAttr()

    @model_validator(mode="after")
    def _connect(self) -> Self:
        self._client = gemini_client(
            owner="ChatGemini",
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            http_client=self.http_client,
            async_http_client=self.http_async_client,
            default_headers=self.default_headers,
            cache_mode=self.cache_mode,
            cache_ttl=self.cache_ttl,
            cache_registry=self.cache_registry,
        )
        provider = self.cache_manager.client
        assert isinstance(provider, GeminiProvider)
        self._media = GeminiMedia(provider.files, threshold=self.file_upload_threshold)
        return self

    @property
    def _llm_type(self) -> str:
        return "gemini-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "GEMINI_API_KEY"}

    @property
    def cache_manager(self) -> ExplicitCacheManager:
        """The manager of this model's explicit caches (registry, policy, TTL)."""
        manager = self._client
        assert isinstance(manager, ExplicitCacheManager)
        return manager

    def _extra_body(self) -> dict[str, Any]:
        return gemini_options(thinking_budget=self.thinking_budget)

    @property
    def files(self) -> GeminiFiles:
        """The Gemini Files API with this model's key and clients: upload, get, list, delete, wait_active."""
        return self._media.files

    @property
    def media(self) -> GeminiMedia:
        """How this model's requests move large media to the Files API (threshold, uploader)."""
        return self._media

    def _resolve(self, request: ChatRequest) -> ChatRequest:
        return self._media.resolve(request)

    async def _aresolve(self, request: ChatRequest) -> ChatRequest:
        return await self._media.aresolve(request)

    # -- explicit control -------------------------------------------------------------------------

    def cache_context(
        self,
        content: str | Sequence[BaseMessage] | None = None,
        *,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
    ) -> PinnedContext:
        """Pin a long context (a document, or messages) in a Gemini cache now and return its handle.

        The handle's `messages` reproduce the cached prefix; send them ahead of each question (or
        use `handle.invoke(question)`) and the request is served from the cache.
        """
        messages: list[BaseMessage] = [SystemMessage(system)] if system else []
        if isinstance(content, str):
            messages.append(HumanMessage(content))
        elif content is not None:
            messages.extend(content)
        non_system = [i for i, m in enumerate(messages) if not isinstance(m, SystemMessage)]
        if non_system:
            last = non_system[-1]
            marked = messages[last].model_copy(
                update={"additional_kwargs": {**messages[last].additional_kwargs, **_CACHE_POINT}}
            )
            messages[last] = marked
        llm: Runnable[LanguageModelInput, AIMessage] = self
        tool_defs = tuple(tool_from_langchain(t) for t in tools or ())
        if tools:
            llm = self.bind_tools(tools, tool_choice=tool_choice)
        request = ChatRequest(
            model=self.model,
            messages=messages_from_langchain(messages) if messages else (),
            tools=tool_defs,
            tool_choice=tool_choice_from_spec(tool_choice, [t.name for t in tool_defs]),
        )
        handle = self.cache_manager.pin(self._resolve(request), layout=self.cache_friendly_layout)
        return PinnedContext(handle, messages, llm)

    def list_caches(self) -> list[CachedContent]:
        """Live Gemini caches this library created under this key."""
        return self.cache_manager.list_caches()  # type: ignore[return-value]

    def delete_caches(self) -> int:
        """Delete every live cache this library created under this key; returns how many."""
        return self.cache_manager.delete_all()
