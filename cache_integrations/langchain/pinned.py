"""`PinnedContext`: a `ChatGemini` bound to one context pinned in a Gemini cache (built by `cache_context`).

Kept apart from `.gemini` because it stands on the pinned-session and explicit-cache stack, which importing
`ChatGemini` must not load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import Field, PrivateAttr

from ..explicit import UploadedFile
from ..messages import ChatRequest, MediaPart, Message, TextPart, tool_choice_from_spec
from ..pinned import PinnedControls, PinnedSession, context_messages, context_part
from ._convert import messages_from_langchain, tool_from_langchain
from .gemini import _SHARED, ChatGemini

__all__ = ["PinnedContext", "pinned_context", "pinned_prefix"]

# The prefix `cache_context` built (and validated, so bad content raises as itself, not wrapped by pydantic).
_PREFIX: ContextVar[_Prefix | None] = ContextVar("cache_integrations_pinned_prefix", default=None)


def pinned_context(
    model: ChatGemini,
    content: Any,
    system: str | None,
    tools: Sequence[Any] | None,
    tool_choice: Any,
    recreate: bool,
) -> PinnedContext:
    """A `PinnedContext` with `model`'s settings, sharing its `GeminiChat` (not pinned yet)."""
    prefix = pinned_prefix(model.model, content, system, tools, tool_choice)
    # the settings the caller gave (others keep their defaults: an explicit streaming=False would
    # turn streaming off)
    settings = {name: getattr(model, name) for name in model.model_fields_set if name in ChatGemini.model_fields}
    shared, built = _SHARED.set(model._gemini), _PREFIX.set(prefix)
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
        _SHARED.reset(shared)
        _PREFIX.reset(built)


_CACHE_POINT = {"cache_control": {"type": "ephemeral"}}
_BLOCK_TYPES = {"image": "image", "audio": "audio", "video": "video", "document": "file"}


def _block(part: Any) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    assert isinstance(part, MediaPart)
    block: dict[str, Any] = {"type": _BLOCK_TYPES[part.kind], "mime_type": part.mime_type}
    if part.file_uri is not None:
        block["file_id"] = part.file_uri
    elif part.url is not None:
        block["url"] = part.url
    else:
        import base64

        from ..media import read_media

        block["base64"] = base64.b64encode(read_media(part, "content")).decode("ascii")
    return block


_Prefix = tuple[ChatRequest, dict[int, BaseMessage], list[object]]


def pinned_prefix(model: str, content: Any, system: str | None, tools: Sequence[Any] | None, choice: Any) -> _Prefix:
    """The neutral prefix of a pinned context, the caller's messages by position, and objects to keep alive."""
    items: list[Any] = list(content) if isinstance(content, (list, tuple)) else [content]
    neutral: list[Any] = []
    given: list[tuple[Message, BaseMessage]] = []  # messages the caller gave, to show them as given
    keep: list[object] = []
    for i, item in enumerate(items):
        where = f"content[{i}]" if isinstance(content, (list, tuple)) else "content"
        if item is None:
            continue
        if isinstance(item, BaseMessage):
            (converted,) = messages_from_langchain([item])
            given.append((converted, item))
            neutral.append(converted)
        elif isinstance(item, Mapping):  # a LangChain content block
            (block,) = messages_from_langchain([HumanMessage(content=[dict(item)])])
            neutral.extend(block.content)
        else:
            if isinstance(item, UploadedFile):
                keep.append(item)
            neutral.append(context_part(item, where))
    messages = context_messages(neutral, system=system)
    originals: dict[int, BaseMessage] = {}
    j = 0
    for i, message in enumerate(messages):
        if j < len(given) and message in (given[j][0], replace(given[j][0], cache_point=True)):
            originals[i] = given[j][1]
            j += 1
    definitions = tuple(tool_from_langchain(t) for t in tools or ())
    tool_choice = tool_choice_from_spec(choice, [t.name for t in definitions])
    return ChatRequest(model=model, messages=messages, tools=definitions, tool_choice=tool_choice), originals, keep


def _to_langchain(message: Message) -> BaseMessage:
    extra = dict(_CACHE_POINT) if message.cache_point else {}
    if message.role == "system":
        return SystemMessage(message.text)
    if isinstance(message.content, str):
        return HumanMessage(message.content, additional_kwargs=extra)
    return HumanMessage(content=[_block(p) for p in message.content], additional_kwargs=extra)


class PinnedContext(PinnedControls, ChatGemini):
    """A `ChatGemini` bound to one pinned context: every call sends only its own turns after the cache.

    Built by `ChatGemini.cache_context` (pinned at once) or directly, like any chat model, with
    `content` and `system` (pinned on first use). `name`, `tokens`, `expire_time` and `created`
    describe the cache; `messages` reproduce the cached prefix as LangChain messages; `refresh()`
    extends it; `delete()` deletes it (and any cache this context created for tools bound later).
    """

    content: Any = Field(default=None, exclude=True, repr=False)
    """What to cache: text, a path, bytes, an uploaded file, messages, content blocks, or a list of them."""
    system: str | None = Field(default=None, repr=False)
    """The system instruction cached with the content."""
    pinned_tools: list[Any] | None = Field(default=None, exclude=True)
    """Tools cached with the content (bound to every call that binds no tools of its own)."""
    pinned_tool_choice: Any = None
    recreate: bool = False
    """After `delete()`: True creates the cache again on the next call; False (default) raises."""

    _originals: dict[int, BaseMessage] = PrivateAttr(default_factory=dict)
    _session: PinnedSession = PrivateAttr()

    @property
    def _llm_type(self) -> str:
        return "gemini-chat-pinned"

    def _bind_client(self) -> None:
        built = _PREFIX.get() or pinned_prefix(
            self.model, self.content, self.system, self.pinned_tools, self.pinned_tool_choice
        )
        prefix, self._originals, keep = built
        self._session = PinnedSession(
            self._gemini,
            prefix,
            recreate=self.recreate,
            layout=self.cache_friendly_layout,
            keep=keep,
            on_handle=self._named,
        )
        self._client = self._session

    def _named(self, handle: Any) -> None:
        """The run name (`name`) is the cache's name, so traces show which cache served a call."""
        self.name = handle.name

    @property
    def messages(self) -> list[BaseMessage]:
        """The cached prefix as LangChain messages (the last one carries the cache point): sent ahead of a
        question through any `ChatGemini` of the same key, the request is served from this cache."""
        prefix = self._session.resolved_prefix or self._session.prefix
        out: list[BaseMessage] = []
        for i, message in enumerate(prefix.messages):
            original = self._originals.get(i)
            if original is None:
                out.append(_to_langchain(message))
            elif message.cache_point and "cache_control" not in original.additional_kwargs:
                out.append(
                    original.model_copy(update={"additional_kwargs": {**original.additional_kwargs, **_CACHE_POINT}})
                )
            else:
                out.append(original)
        return out

    @property
    def llm(self) -> Runnable[LanguageModelInput, AIMessage]:
        """This model (kept for code written against the earlier `PinnedContext.llm`)."""
        return self
