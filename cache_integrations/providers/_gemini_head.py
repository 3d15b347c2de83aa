"""The head of a Gemini request (system instruction, tools, tool config), encoded once per distinct head.

A conversation sends the same system instruction and tools on every call; a long system instruction (a pinned
document) would otherwise be encoded to JSON twice a call: once to start the fingerprint chain, once for the body.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from .._memo import Memo, register
from ..errors import InvalidRequestError
from ..layout import canonical_json
from ..messages import ForcedTool, ToolDefinition

__all__ = ["head_of"]

_MODEL_PREFIX = "models/"
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _encode_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "parametersJsonSchema": tool.parameters}


def _encode_tool_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, ForcedTool):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    return {"functionCallingConfig": {"mode": _TOOL_CHOICE_MODES[choice]}}


class _Head:
    """What precedes the contents (system instruction, tools, tool config), encoded once per distinct head.

    `header` (with the model) starts the fingerprint chain; `fragment` is the inline body's members. Both are
    computed on first use, so an encoding error is raised where it always was."""

    __slots__ = ("_fragment", "_header", "head", "model")

    def __init__(self, model: str, head: dict[str, Any]) -> None:
        self.model = model
        self.head = head
        self._header: bytes | None = None
        self._fragment: bytes | None = None

    @property
    def header(self) -> bytes:
        if self._header is None:
            self._header = canonical_json({"model": _MODEL_PREFIX + self.model, **self.head}, what="tools").encode()
        return self._header

    @property
    def fragment(self) -> bytes:
        if self._fragment is None:
            self._fragment = canonical_json(self.head, what="systemInstruction and tools")[1:-1].encode()
        return self._fragment


_HEADS: Memo[Hashable, _Head] = Memo("Gemini heads", max_entries=1024, max_weight=64 * 1024 * 1024)
register(_HEADS)


def head_of(model: str, system_texts: tuple[str, ...], tools: Sequence[ToolDefinition], tool_choice: Any) -> _Head:
    head: dict[str, Any] = {}
    if system_texts:
        head["systemInstruction"] = {"parts": [{"text": text} for text in system_texts]}
    if tools:
        head["tools"] = [{"functionDeclarations": [_encode_tool(t) for t in tools]}]
    if tool_choice is not None:
        head["toolConfig"] = _encode_tool_config(tool_choice)
    try:  # the system texts are the same objects call after call (kept in their messages' facts): cheap to key
        extra = canonical_json([head.get("tools"), head.get("toolConfig")]) if len(head) > 1 or not system_texts else ""
    except InvalidRequestError:
        return _Head(model, head)  # not JSON: raised where the head is encoded, as before
    key = (model, system_texts, extra)
    found = _HEADS.get(key)
    if found is None:
        found = _Head(model, head)
        _HEADS.put(key, found, sum(len(t) for t in system_texts) * 2 + len(extra) + 256)
    return found
