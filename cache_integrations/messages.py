"""The neutral message and tool model every provider and adapter speaks.

Framework adapters convert into these types once; providers encode them into their wire format.
They are frozen slotted dataclasses rather than pydantic models because they sit on the hot path of
every call and are never parsed from untrusted input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .usage import Usage

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ForcedTool",
    "ImagePart",
    "MediaKind",
    "MediaPart",
    "Message",
    "Part",
    "Role",
    "StreamChunk",
    "TextPart",
    "ToolCall",
    "ToolCallChunk",
    "ToolChoice",
    "ToolDefinition",
    "tool_choice_from_spec",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL: ``https://...`` or a ``data:image/...;base64,...`` URL."""

    url: str
    detail: str | None = None


MediaKind = Literal["image", "document", "audio", "video"]
MEDIA_KINDS: frozenset[str] = frozenset(("image", "document", "audio", "video"))


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image, document (PDF, text), audio clip or video, from exactly one source.

    The sources: `data` (the bytes themselves; base64 on the wire), `url` (``https://...`` or a
    ``data:<mime>;base64,...`` URL), `file_uri` (a provider file: a Gemini Files API URI, or
    ``files/<id>``) or `path` (a local file, read when the request is encoded or uploaded, so a
    large video is streamed to the Files API rather than held in memory). `mime_type` may be left
    out when it can be told from the path's or URL's extension or from the bytes; providers raise a
    clear error when it cannot. `name` is a display name (a document's title, a file name).
    """

    kind: MediaKind
    mime_type: str | None = None
    data: bytes | None = None
    url: str | None = None
    file_uri: str | None = None
    path: str | None = None
    detail: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        from .errors import InvalidRequestError

        if self.kind not in MEDIA_KINDS:
            raise InvalidRequestError(f"MediaPart.kind: {self.kind!r} is not one of {sorted(MEDIA_KINDS)}")
        if self.path is not None and not isinstance(self.path, str):
            if not isinstance(self.path, os.PathLike):
                raise InvalidRequestError(
                    f"MediaPart.path: expected a str or os.PathLike, got {type(self.path).__name__}"
                )
            object.__setattr__(self, "path", os.fspath(self.path))
        if self.data is not None and not isinstance(self.data, bytes):
            if not isinstance(self.data, (bytearray, memoryview)):
                raise InvalidRequestError(f"MediaPart.data: expected bytes, got {type(self.data).__name__}")
            object.__setattr__(self, "data", bytes(self.data))
        given = [n for n in ("data", "url", "file_uri", "path") if getattr(self, n) is not None]
        if len(given) != 1:
            raise InvalidRequestError(
                f"MediaPart: give exactly one source of data, url, file_uri and path, got {given or 'none'}"
            )

    @property
    def source(self) -> Literal["data", "url", "file_uri", "path"]:
        """Which of the four sources this part carries."""
        if self.data is not None:
            return "data"
        if self.url is not None:
            return "url"
        return "file_uri" if self.file_uri is not None else "path"

    def __repr__(self) -> str:
        # Never print the bytes: a repr of a request holding a video must stay readable.
        src = (
            f"data=<{len(self.data)} bytes>"
            if self.data is not None
            else f"{self.source}={getattr(self, self.source)!r:.120}"
        )
        mime = f", mime_type={self.mime_type!r}" if self.mime_type else ""
        return f"MediaPart(kind={self.kind!r}{mime}, {src})"


Part = TextPart | ImagePart | MediaPart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant asked for. `arguments` is parsed JSON; providers re-encode it canonically.

    When the model produced arguments that are not a JSON object, `arguments` is empty, `error`
    says why and `raw_arguments` keeps the text, so nothing the model said is lost.
    """

    id: str
    name: str
    arguments: Mapping[str, Any]
    raw_arguments: str | None = None
    error: str | None = None
    signature: str | None = None
    """An opaque provider token that must travel back with the call (Gemini's thoughtSignature)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn.

    `cache_point` marks the end of a stable segment (a `cache_control` marker in the caller's input).
    Explicit-cache providers cache up to the last cache point; implicit ones accept and ignore it.
    `reasoning` is the assistant's reasoning text, replayed verbatim so the prefix stays byte-stable.
    """

    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    cache_point: bool = False

    @property
    def text(self) -> str:
        """The text content, with parts joined (images and other media skipped)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ForcedTool:
    """A `tool_choice` that forces one named tool."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | ForcedTool


def tool_choice_from_spec(choice: Any, tool_names: Sequence[str]) -> ToolChoice | None:
    """Any common spelling of tool_choice (LangChain's, LlamaIndex's, OpenAI's) as the neutral one.

    ``True``/``"any"``/``"required"`` force some tool, a tool name or ``{"function": {"name": ...}}``
    forces that tool; anything else raises, naming the allowed values.
    """
    if choice is None or choice is False:
        return None
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice == "auto" or choice == "none":
        return "auto" if choice == "auto" else "none"
    name: Any = choice
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
    if isinstance(name, str) and name in tool_names:
        return ForcedTool(name)
    from .errors import InvalidRequestError

    raise InvalidRequestError(
        f"tool_choice: {choice!r} is not 'auto', 'none', 'any', 'required' "
        f"or one of the bound tools {list(tool_names)!r}"
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the caller asks for, before the cache-friendly layout and wire encoding.

    `extra` carries provider-specific body fields (for example GLM's ``thinking``); they are merged
    into the request body last and may not override the fields above.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    response_format: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete answer. `prefix_fingerprint` identifies the request's stable prefix."""

    message: Message
    finish_reason: str | None
    usage: Usage
    model: str
    id: str | None = None
    prefix_fingerprint: str | None = None
    raw_usage: Mapping[str, Any] | None = None
    cache: Any = None
    """The explicit cache used, as `cache_integrations.explicit.CacheUse` (None when none was)."""


@dataclass(frozen=True, slots=True)
class ToolCallChunk:
    """A piece of a streamed tool call; pieces with the same `index` concatenate.

    A call that arrived whole has ``index=None``.
    """

    index: int | None
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One streamed delta.

    Providers emit content deltas with `usage=None` and then exactly one final chunk with
    `final=True` carrying the merged usage, the finish reason and the model name, so every adapter
    reports usage once, at the end, whatever the provider's chunk placement.
    """

    text: str = ""
    reasoning: str = ""
    tool_call_chunks: tuple[ToolCallChunk, ...] = ()
    final: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    prefix_fingerprint: str | None = None
    raw_usage: Mapping[str, Any] | None = None
    cache: Any = None
    """On the final chunk: the explicit cache used, as `CacheUse` (None when none was)."""
