"""The cache-friendly layout: the same conversation must always produce the same request prefix.

Implicit caches (GLM, OpenAI, DeepSeek, Qwen) hit only on a byte-identical prefix, and explicit
caches (Gemini) are keyed on their content. So before encoding a request we

* hoist system messages to the front, keeping their relative order;
* order tool definitions by name and serialize every JSON value canonically (sorted keys, fixed
  separators, no ASCII escaping), including tool-call arguments;
* leave message content byte-for-byte as the caller wrote it.

`PrefixFingerprints` then hashes the encoded request piece by piece (a SHA-256 chain over the
header and each message), which identifies the stable prefix and lets diagnostics find where two
requests diverge.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from .errors import InvalidRequestError
from .messages import ChatRequest, Message, ToolDefinition

__all__ = [
    "FirstSeenOrder",
    "PrefixFingerprints",
    "apply_layout",
    "canonical_json",
    "fingerprint_chain",
    "layout_order",
    "stable_order",
    "stable_prefix_length",
    "tool_order",
]

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any, *, what: str = "value") -> str:
    """Serialize `value` canonically; `what` names the value in the error if it cannot be."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{what} is not JSON-serializable: {exc}") from exc


def apply_layout(request: ChatRequest) -> ChatRequest:
    """Return `request` with system messages first and tools ordered by name.

    Nothing is dropped or rewritten: the result holds the same messages and tools.
    """
    messages = request.messages
    order = layout_order(messages)
    if order != tuple(range(len(messages))):
        messages = tuple(messages[i] for i in order)
    tools = request.tools
    if len(tools) > 1:
        tools = tuple(tools[i] for i in tool_order(tools))
        _check_unique_tool_names(tools)
    if messages is request.messages and tools is request.tools:
        return request
    return replace(request, messages=messages, tools=tools)


def layout_order(messages: Sequence[Message]) -> tuple[int, ...]:
    """Indices of `messages` in the cache-friendly order: system messages first (keeping their relative
    order), then the others as they were. Adapters of foreign models reorder the caller's own objects by it."""
    first_other = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    if not any(m.role == "system" for m in messages[first_other:]):
        return tuple(range(len(messages)))
    system = [i for i, m in enumerate(messages) if m.role == "system"]
    return (*system, *(i for i, m in enumerate(messages) if m.role != "system"))


def tool_order(tools: Sequence[ToolDefinition]) -> tuple[int, ...]:
    """Indices of `tools` ordered by name (stable for equal names)."""
    return tuple(sorted(range(len(tools)), key=lambda i: tools[i].name))


def _check_unique_tool_names(tools: Sequence[ToolDefinition]) -> None:
    for a, b in itertools.pairwise(tools):
        if a.name == b.name:
            raise InvalidRequestError(f"tools: two tool definitions are named {a.name!r}; names must be unique")


_T = TypeVar("_T")


def stable_order(items: Iterable[_T], key: Callable[[_T], Any]) -> list[_T]:
    """Order retrieved context (documents, nodes) by a stable key, not by retrieval score.

    A retriever returns the same documents in a different order for every question; sorted by a
    stable key (an id, a source path) they form the same prefix every time, which the cache can serve.
    Duplicates (same key) are kept once, at their first position in key order. When the retrieved
    *set* varies between questions, prefer `FirstSeenOrder`.
    """
    seen: dict[Any, _T] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return [seen[k] for k in sorted(seen)]


class FirstSeenOrder(Generic[_T]):
    """Order retrieved context by when each item was first seen: known items first, new ones last.

    `stable_order` (sort by key) is ideal when every question retrieves the same set. When the set
    varies, a new item can sort ahead of items sent before and break the prefix there; first-seen
    order keeps every previously sent item in place and appends new ones, the way an append-only
    history does. Thread-safe; remembers up to `max_items` keys.

        order = FirstSeenOrder(key=lambda doc: doc.metadata["id"])
        docs = order(retriever.invoke(question))
    """

    def __init__(self, key: Callable[[_T], Any], *, max_items: int = 100_000) -> None:
        self._key = key
        self._ranks: dict[Any, int] = {}
        self._max = max_items
        self._lock = threading.Lock()

    def __call__(self, items: Iterable[_T]) -> list[_T]:
        unique: dict[Any, _T] = {}
        for item in items:
            unique.setdefault(self._key(item), item)
        with self._lock:
            for k in unique:  # new keys get the next rank, in the order they arrived
                if k not in self._ranks and len(self._ranks) < self._max:
                    self._ranks[k] = len(self._ranks)
            ranks = {k: self._ranks.get(k, len(self._ranks)) for k in unique}
        return [unique[k] for k in sorted(unique, key=ranks.__getitem__)]


def stable_prefix_length(messages: Sequence[Message]) -> int:
    """How many leading messages form the stable prefix.

    Everything up to the last system or assistant turn, or the last cache point, whichever is later:
    the trailing user/tool turns are the new question and change on every call.
    """
    stable = 0
    for i, m in enumerate(messages):
        if m.role in ("system", "assistant") or m.cache_point:
            stable = i + 1
    return stable


def fingerprint_chain(header: bytes, segments: Sequence[bytes]) -> list[str]:
    """SHA-256 chain: element 0 covers `header`, element i+1 covers header and segments[0..i]."""
    h = hashlib.sha256(header)
    out = [h.hexdigest()]
    for seg in segments:
        h.update(b"\x1e")
        h.update(seg)
        out.append(h.copy().hexdigest())
    return out


@dataclass(frozen=True, slots=True)
class PrefixFingerprints:
    """Fingerprints of one encoded request.

    `chain[0]` covers model and tools; `chain[i]` additionally covers the first i messages.
    `prefix` is the fingerprint of the stable prefix (`chain[stable_messages]`).
    """

    chain: tuple[str, ...]
    stable_messages: int

    @property
    def prefix(self) -> str:
        return self.chain[self.stable_messages]

    @classmethod
    def of(cls, header: bytes, segments: Sequence[bytes], messages: Sequence[Message]) -> PrefixFingerprints:
        return cls(tuple(fingerprint_chain(header, segments)), stable_prefix_length(messages))
