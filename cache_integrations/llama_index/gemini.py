"""`Gemini`: a LlamaIndex LLM that manages Gemini's explicit context caches and Files API uploads.

The system instruction, tools, tool config and the turns up to the last `CachePoint` (or
``cache_control`` marker) live in a Gemini ``cachedContents`` resource that is created once (when it
pays off, per `cache_mode`), reused, extended while in use and recreated if it vanishes. Large media
goes through the Files API once per content and is uploaded again after it expires. `cache_context`
pins a context (text, PDFs, videos, ...) and returns an LLM bound to its cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, ClassVar

from llama_index.core.base.llms.types import (
    AudioBlock,
    CacheControl,
    CachePoint,
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    VideoBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr

from ..clients import gemini_chat
from ..explicit import CacheMode
from ..explicit.files import UploadedFile
from ..gemini_chat import GeminiChat
from ..gemini_controls import GeminiControls
from ..messages import ChatRequest, MediaPart, Message, TextPart, ToolDefinition, tool_choice_from_spec
from ..pinned import PinnedControls, PinnedSession, context_messages, context_part
from ..providers.gemini import GEMINI_BASE_URL
from ..providers.gemini_media import DEFAULT_FILE_UPLOAD_THRESHOLD
from ..validation import GEMINI_LIMITS, SamplingLimits
from ._convert import messages_from_llama_index, tool_from_llama_index
from ._media import MEDIA_BLOCK_TYPES, media_from_block
from .llms import CachingLLM, _secret_from_env

__all__ = ["Gemini", "PinnedContext"]

_SHARED: ContextVar[GeminiChat | None] = ContextVar("cache_integrations_shared_llama_gemini", default=None)


class Gemini(GeminiControls, CachingLLM):
    """Gemini with explicit context caching and Files API uploads managed end to end.

    Usage reports ``prompt_tokens_details.cached_tokens`` (Gemini's ``cachedContentTokenCount``, included
    in ``prompt_tokens``) and, on the call that created a cache, ``cache_creation_input_tokens``;
    ``raw["cache"]`` names the cache used and the storage it booked. The cache lifetime is `cache_ttl`;
    a `CacheControl.ttl` is not used.

    Example:
        ```python
        llm = Gemini(model="gemini-2.5-flash")  # key from GEMINI_API_KEY or GOOGLE_API_KEY
        with llm.cache_context(Path("report.pdf"), system="Answer from the report only.") as doc:
            for q in questions:
                print(doc.chat(q).message.content)   # an LLM: stream, async, tools, agents
        ```
    """

    model: str = Field(default="gemini-2.5-flash", description="Gemini model name.")
    api_key: SecretStr | None = Field(
        default_factory=lambda: _secret_from_env("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        exclude=True,
        description="API key; read from GEMINI_API_KEY or GOOGLE_API_KEY when not given.",
    )
    base_url: str = Field(default_factory=lambda: os.environ.get("GEMINI_BASE_URL") or GEMINI_BASE_URL)
    cache_mode: CacheMode = Field(
        default="auto", description="auto (create a cache once it pays for itself), always or off."
    )
    cache_ttl: float = Field(default=3600.0, description="Seconds a new cache lives; caches in use are extended.")
    cache_registry: Any = Field(
        default=None,
        exclude=True,
        repr=False,  # a Redis URL may hold a password
        description='Where caches and uploaded files are remembered: "sqlite" (default), "sqlite:///path", '
        '"redis://host:6379/0", "memory" or a CacheRegistry.',
    )
    thinking_budget: int | None = Field(
        default=None, description="Gemini 2.5+ thinking budget in tokens (0 disables thinking on Flash)."
    )
    file_upload_threshold: int = Field(
        default=DEFAULT_FILE_UPLOAD_THRESHOLD,
        ge=0,
        description="Bytes above which an image, document, audio or video block is uploaded through the Files "
        "API and sent as fileData (PDFs above 50 MB always are); default 50 MB, the largest part Gemini "
        "takes inline for every media type.",
    )

    _default_context_window: ClassVar[int] = 1_048_576
    _limits: ClassVar[SamplingLimits] = GEMINI_LIMITS
    _gemini: GeminiChat = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "cache_integrations_gemini"

    def _connect(self) -> None:
        shared = _SHARED.get()
        if shared is not None:
            self._gemini = shared
        else:
            self._gemini = gemini_chat(
                owner="Gemini",
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

    def _bind_client(self) -> None:
        """Subclasses put their own client in front of the shared `GeminiChat` (a pinned context's session)."""

    # -- explicit control -------------------------------------------------------------------------

    def _pinned(
        self, content: Any, system: str | None, tools: Sequence[Any] | None, tool_choice: Any, recreate: bool
    ) -> PinnedContext:
        # the settings the caller gave (others keep their defaults: an explicit streaming=False would
        # turn streaming off)
        settings = {name: getattr(self, name) for name in self.model_fields_set if name in Gemini.model_fields}
        token = _SHARED.set(self._gemini)
        try:
            return PinnedContext(
                **settings,
                content=content,
                system=system,
                pinned_tools=list(tools) if tools else None,
                pinned_tool_choice=tool_choice,
                recreate=recreate,
            )
        finally:
            _SHARED.reset(token)

    def cache_context(
        self,
        content: Any = None,
        *,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        recreate: bool = False,
    ) -> PinnedContext:
        """Pin a context in a Gemini cache now and return an LLM bound to it.

        `content` is text, a path (`pathlib.Path`), bytes, an `UploadedFile`, LlamaIndex `ChatMessage`s or
        blocks (`DocumentBlock`, `ImageBlock`, ...), or a list mixing them; `system` and `tools` are cached
        with it. The returned `PinnedContext` is a `FunctionCallingLLM`: ``chat(question)``, stream, async,
        tools and agents send only the new turns. As a context manager it deletes the cache on exit; after
        `delete()` using it raises, unless `recreate` is True.
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
        """`cache_context` for asyncio."""
        pinned = self._pinned(content, system, tools, tool_choice, recreate)
        await pinned.apin()
        return pinned


def _block(part: Any) -> ContentBlock:
    if isinstance(part, TextPart):
        return TextBlock(text=part.text)
    assert isinstance(part, MediaPart)
    source: dict[str, Any] = {"url": part.file_uri or part.url} if (part.file_uri or part.url) else {}
    if not source:
        source = {"path": part.path} if part.path is not None else {"data": part.data}
    mime = part.mime_type
    if part.kind == "image":
        return ImageBlock(image_mimetype=mime, **({"image": source.pop("data")} if "data" in source else source))
    if part.kind == "audio":
        fmt = mime.split("/", 1)[1] if mime else None
        return AudioBlock(format=fmt, **({"audio": source.pop("data")} if "data" in source else source))
    if part.kind == "video":
        return VideoBlock(video_mimetype=mime, **({"video": source.pop("data")} if "data" in source else source))
    return DocumentBlock(document_mimetype=mime, title=part.name or "input_document", **source)


def _to_llama_index(message: Message) -> ChatMessage:
    point: list[ContentBlock] = (
        [CachePoint(cache_control=CacheControl(type="ephemeral"))] if message.cache_point else []
    )
    if message.role == "system":
        return ChatMessage(role=MessageRole.SYSTEM, content=message.text)
    if isinstance(message.content, str):
        return ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text=message.content), *point])
    return ChatMessage(role=MessageRole.USER, blocks=[*(_block(p) for p in message.content), *point])


def _as_messages(messages: str | ChatMessage | Sequence[ChatMessage]) -> Sequence[ChatMessage]:
    if isinstance(messages, str):
        return [ChatMessage(role=MessageRole.USER, content=messages)]
    if isinstance(messages, ChatMessage):
        return [messages]
    return messages


class PinnedContext(PinnedControls, Gemini):
    """A `Gemini` LLM bound to one pinned context: every call sends only its own turns after the cache.

    Built by `Gemini.cache_context` (pinned at once) or directly with `content` and `system` (pinned on
    first use). ``chat(question)`` takes a string too. `name`, `tokens`, `expire_time` and `created`
    describe the cache; `messages` and `tools` reproduce the cached prefix; `refresh()` extends it;
    `delete()` deletes it.
    """

    content: Any = Field(default=None, exclude=True, repr=False, description="What to cache.")
    system: str | None = Field(default=None, description="The system instruction cached with the content.")
    pinned_tools: list[Any] | None = Field(default=None, exclude=True, description="Tools cached with the content.")
    pinned_tool_choice: Any = Field(default=None, description="The tool choice cached with the tools.")
    recreate: bool = Field(
        default=False, description="After delete(): True creates the cache again on the next call; False raises."
    )

    _session: PinnedSession = PrivateAttr()
    _originals: dict[int, ChatMessage] = PrivateAttr(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        return "cache_integrations_gemini_pinned"

    def _bind_client(self) -> None:
        prefix, keep = self._prefix_request()
        self._session = PinnedSession(
            self._gemini, prefix, recreate=self.recreate, layout=self.cache_friendly_layout, keep=keep
        )
        self._client = self._session

    def _prefix_request(self) -> tuple[ChatRequest, list[object]]:
        items: list[Any] = list(self.content) if isinstance(self.content, (list, tuple)) else [self.content]
        neutral: list[Any] = []
        given: list[tuple[Message, ChatMessage]] = []
        keep: list[object] = []
        for i, item in enumerate(items):
            where = f"content[{i}]" if isinstance(self.content, (list, tuple)) else "content"
            if item is None:
                continue
            if isinstance(item, ChatMessage):
                (converted,) = messages_from_llama_index([item])
                given.append((converted, item))
                neutral.append(converted)
            elif isinstance(item, TextBlock):
                neutral.append(TextPart(item.text))
            elif isinstance(item, MEDIA_BLOCK_TYPES):
                neutral.append(media_from_block(item, where))
            else:
                if isinstance(item, UploadedFile):
                    keep.append(item)
                neutral.append(context_part(item, where))
        messages = context_messages(neutral, system=self.system)
        j = 0
        for i, message in enumerate(messages):
            if j < len(given) and message in (given[j][0], replace(given[j][0], cache_point=True)):
                self._originals[i] = given[j][1]
                j += 1
        definitions = tuple(tool_from_llama_index(t) for t in self.pinned_tools or ())
        choice = tool_choice_from_spec(self.pinned_tool_choice, [t.name for t in definitions])
        return ChatRequest(model=self.model, messages=messages, tools=definitions, tool_choice=choice), keep

    @property
    def name(self) -> str:
        """The provider's cache name (``cachedContents/...``)."""
        return self.cache_name

    @property
    def messages(self) -> list[ChatMessage]:
        """The cached prefix as LlamaIndex messages (the last one ends with a `CachePoint`): sent ahead of a
        question through any `Gemini` of the same key (with `tools`), the request is served from this cache."""
        prefix = self._session.resolved_prefix or self._session.prefix
        out: list[ChatMessage] = []
        for i, message in enumerate(prefix.messages):
            original = self._originals.get(i)
            if original is None:
                out.append(_to_llama_index(message))
            elif message.cache_point and not any(isinstance(b, CachePoint) for b in original.blocks):
                point = CachePoint(cache_control=CacheControl(type="ephemeral"))
                out.append(original.model_copy(update={"blocks": [*original.blocks, point]}))
            else:
                out.append(original)
        return out

    @property
    def tools(self) -> list[ToolDefinition]:
        """The pinned tools (pass them as ``tools=`` when sending `messages` through another `Gemini`)."""
        return list(self._session.prefix.tools)

    @property
    def llm(self) -> PinnedContext:
        """This LLM (kept for code written against the earlier `PinnedContext.llm`)."""
        return self

    # LlamaIndex's chat methods take a list of messages; a pinned context also takes one question.

    def chat(self, messages: str | ChatMessage | Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response: ChatResponse = super().chat(_as_messages(messages), **kwargs)
        return response

    async def achat(self, messages: str | ChatMessage | Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response: ChatResponse = await super().achat(_as_messages(messages), **kwargs)
        return response

    def stream_chat(self, messages: str | ChatMessage | Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        chunks: ChatResponseGen = super().stream_chat(_as_messages(messages), **kwargs)
        return chunks

    async def astream_chat(
        self, messages: str | ChatMessage | Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        chunks: ChatResponseAsyncGen = await super().astream_chat(_as_messages(messages), **kwargs)
        return chunks
