"""The neutral message and tool model every provider and adapter speaks.

Framework adapters convert into these types once; providers encode them into their wire format.
They are frozen slotted dataclasses rather than pydantic models because they sit on the hot path of
every call and are never parsed from untrusted input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .usage import Usage

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ForcedTool",
    "ImagePart",
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


Part = TextPart | ImagePart


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
        """The text content, with parts joined (images skipped)."""
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
    """A complete answer. `prefix_fingerprint` identifies the request's stable prefix.

    `usage` is None when the provider reported none, or none that is valid (unknown, not zero).
    """

    message: Message
    finish_reason: str | None
    usage: Usage | None
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
