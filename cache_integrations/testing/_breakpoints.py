"""Explicit cache breakpoints on OpenAI-compatible chat: GPT-5.6 explicit mode and DashScope ``cache_control``.

Both mark content parts: OpenAI's ``{"type": "text", ..., "prompt_cache_breakpoint": {"mode": "explicit"}}``
(with ``prompt_cache_options: {"mode": "explicit", "ttl": "30m"}``), DashScope's
``{"type": "text", ..., "cache_control": {"type": "ephemeral"}}``. A marked part ends a cacheable prefix:
the prompt rendered up to and including that part. The model, from the providers' docs and recordings:

* a read is the longest marked prefix of the request that an earlier request wrote and that is still
  alive; it refreshes that entry's lifetime, and its size is reported exactly (OpenAI's recorded
  ``cached_tokens: 4012`` is not a multiple of 128: "the boundary is not rounded to a token block");
* writes: the last ``max_writes`` (4) marked prefixes longer than the read and at least ``min_tokens``
  long are written; the reported write is the span from the read to the longest of them (OpenAI
  ``prompt_tokens_details.cache_write_tokens``, DashScope ``cache_creation_input_tokens``);
* entries live ``ttl`` seconds from their last use (OpenAI ``"30m"``, DashScope 5 minutes), per API key
  and model, and are written when the answer is delivered (as implicit entries are, in strict mode).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._render import render_chat
from .tokenizer import Tokenizer

__all__ = ["BreakpointStore", "ExplicitOutcome", "marked_prefixes"]

MAX_WRITES = 4
MAX_READ_BREAKPOINTS = 80  # OpenAI: "matching considers the latest 80 breakpoints"


def _marked(part: Any, marker: str) -> bool:
    return isinstance(part, Mapping) and isinstance(part.get(marker), Mapping)


def marked_prefixes(body: Mapping[str, Any], marker: str, tokenizer: Tokenizer) -> list[tuple[str, int]]:
    """(digest, tokens) of the prompt prefix ending at each content part (or message) carrying ``marker``."""
    messages = body.get("messages") or []
    out: list[tuple[str, int]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            continue
        content = msg.get("content")
        cuts: list[Any] = []
        if isinstance(content, list):
            cuts = [content[: j + 1] for j, part in enumerate(content) if _marked(part, marker)]
        if _marked(msg, marker) and not (cuts and len(cuts[-1]) == len(content or [])):
            cuts.append(content)
        for cut in cuts:
            truncated = {**msg, "content": cut}
            if cut is not content:
                truncated.pop("tool_calls", None)  # they render after the text, past the marked part
            segments = render_chat({"tools": body.get("tools"), "messages": [*messages[:i], truncated]})[:-1]
            text = "\n".join(segments)
            out.append((hashlib.sha256(text.encode()).hexdigest(), tokenizer.count_all(segments)))
    return out


@dataclass(frozen=True)
class ExplicitOutcome:
    read_tokens: int
    write_tokens: int


@dataclass
class _Entry:
    tokens: int
    expires_at: float


def _noop(_: float) -> None:
    return None


class BreakpointStore:
    """Entries written at explicit breakpoints, per scope. Not thread-safe: the emulator calls it under its lock."""

    def __init__(self, max_entries: int = 4000) -> None:
        self._entries: OrderedDict[tuple[Hashable, str], _Entry] = OrderedDict()
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def observe(
        self,
        scope: Hashable,
        prefixes: Sequence[tuple[str, int]],
        now: float,
        *,
        ttl: float,
        min_tokens: int,
        max_writes: int = MAX_WRITES,
    ) -> tuple[ExplicitOutcome, Callable[[float], None]]:
        """Read the longest live marked prefix now; ``commit(at)`` writes the new ones (on delivery)."""
        read = 0
        for digest, tokens in prefixes[-MAX_READ_BREAKPOINTS:]:
            entry = self._entries.get((scope, digest))
            if entry is None:
                continue
            if entry.expires_at <= now:
                del self._entries[(scope, digest)]
                continue
            if tokens > read:
                read = tokens
            entry.expires_at = max(entry.expires_at, now + ttl)
            self._entries.move_to_end((scope, digest))
        writes = [(d, t) for d, t in prefixes[-max_writes:] if t > read and t >= min_tokens]
        written = max((t for _, t in writes), default=read) - read
        if not writes:
            return ExplicitOutcome(read, 0), _noop

        def commit(at: float) -> None:
            for digest, tokens in writes:
                key = (scope, digest)
                self._entries[key] = _Entry(tokens, at + ttl)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

        return ExplicitOutcome(read, written), commit
