"""Volatile values, and requests as chains of units: what the miss diagnostics compare, built once per message.

A request is a chain of units: unit 0 is the model and tool definitions, then one unit per message. Each unit
has an exact hash and a *normalized* hash, computed after masking volatile values (timestamps, dates, times,
UUIDs, long hex ids, epoch numbers). A message's unit is computed once (it is kept in the message's
`MessageFacts`); the lineage chain (`lineage_chain`) fingerprints every normalized prefix, extended from the
longest prefix already fingerprinted, so a conversation is found by its prefix without comparing requests.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

from ._conversations import Unit
from ._memo import Memo, facts_of, register
from .layout import canonical_json
from .messages import Message, TextPart, ToolDefinition

__all__ = ["find_volatile", "lineage_chain", "mask", "message_text", "units_of"]

_VOLATILE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timestamp", re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")),
    ("uuid", re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")),
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")),
    (
        "date",
        re.compile(
            r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? \w+ \d{1,2},? \d{4}\b|"
            r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2},? \d{4}\b"
        ),
    ),
    ("time", re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b")),
    ("epoch", re.compile(r"\b1[6-9]\d{8}(?:\d{3})?\b")),
    ("request id", re.compile(r"\b(?:req|request|trace|session|run)[_-]?(?:id)?[_:=-]?[0-9a-zA-Z]{8,}\b", re.I)),
    ("hex id", re.compile(r"\b[0-9a-f]{16,}\b")),
)
# Separate patterns on purpose: one alternation of all eight is twice as slow in Python's engine.


def find_volatile(text: str) -> list[tuple[str, int, str]]:
    """Volatile values in `text`: (kind, character offset, matched text), first match wins per span."""
    found: list[tuple[str, int, str]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _VOLATILE_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append((kind, m.start(), m.group(0)))
    return sorted(found, key=lambda f: f[1])


# Every volatile pattern needs a digit, a run of eight hex characters or a request-id keyword: text with none of
# them has nothing to mask (one scan instead of eight).
_MAYBE_VOLATILE = re.compile(r"\d|[0-9a-fA-F]{8}|req|trace|session|run", re.I)


def mask(text: str) -> str:
    """`text` with every volatile value replaced by its kind (``<timestamp>`` ...)."""
    if not _MAYBE_VOLATILE.search(text):
        return text
    for kind, pattern in _VOLATILE_PATTERNS:
        text = pattern.sub(f"<{kind}>", text)
    return text


def message_text(message: Message) -> str:
    """A message's text parts, joined (media skipped)."""
    if isinstance(message.content, str):
        return message.content
    return "".join(p.text for p in message.content if isinstance(p, TextPart))


def _h(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def _unit_text(message: Message) -> str:
    """A message as one string: role, text, and the calls it carries (canonical JSON)."""
    parts = [message.role, message_text(message)]
    parts.extend(f"{c.name}:{canonical_json(dict(c.arguments))}" for c in message.tool_calls)
    if message.tool_call_id:
        parts.append(message.tool_call_id)
    return "\x1f".join(parts)


# The masked text's hash by the exact hash: a message rebuilt with the same text (and the model and tools unit)
# is masked once. Masking long texts is the costly part of a diagnosis.
_NORMALIZED: Memo[str, str] = Memo("masked units", max_entries=16_384, max_weight=16_384)
register(_NORMALIZED)


def _unit(text: str) -> Unit:
    exact = _h(text)
    normalized = _NORMALIZED.get(exact)
    if normalized is None:
        normalized = _h(mask(text))
        _NORMALIZED.put(exact, normalized)
    return Unit(exact, normalized, len(text), text)


_HEADS: Memo[str, Unit] = Memo("model and tools units", max_entries=1024, max_weight=16 * 1024 * 1024)
register(_HEADS)


def units_of(model: str, messages: Sequence[Message], tools: Sequence[ToolDefinition]) -> tuple[Unit, ...]:
    """The units of a request: model and tools, then each message's (computed once per distinct message)."""
    text = canonical_json([model, [[t.name, t.description, dict(t.parameters)] for t in tools]])
    head = _HEADS.get(text)
    if head is None:
        head = _unit(text)
        _HEADS.put(text, head, len(text) + 256)
    out = [head]
    for message, facts in zip(messages, facts_of(messages), strict=True):
        unit = facts.unit
        if unit is None:  # a message not seen before; its masked hash may be known (the same text, rebuilt)
            unit = facts.unit = _unit(_unit_text(message))
        out.append(unit)
    return tuple(out)


_LINEAGE: Memo[tuple[str, str], str] = Memo("lineage chain", max_entries=100_000, max_weight=100_000)
register(_LINEAGE)


# The latest requests' chains by their first unit: a request that re-sends the units of the previous one (the
# same objects, from the message facts) reuses its chain up to where they differ, comparing identities only.
_RECENT: OrderedDict[str, tuple[Sequence[Unit], tuple[str, ...]]] = OrderedDict()
_RECENT_MAX = 16
_recent_lock = threading.Lock()


def lineage_chain(units: Sequence[Unit]) -> tuple[str, ...]:
    """Element k fingerprints the normalized hashes of ``units[0..k]``: equal elements, equal normalized
    prefixes. Only the units after the longest prefix fingerprinted before are hashed."""
    if not units:
        return ()
    first = units[0].normalized
    with _recent_lock:
        recent = _RECENT.get(first)
    out = [first]
    known = 1
    if recent is not None:
        before, chain = recent
        limit = min(len(before), len(units))
        while known < limit and before[known] is units[known]:
            known += 1
        out = list(chain[:known])
    prev = out[-1]
    if known < len(units):
        with _LINEAGE._lock:
            data = _LINEAGE._data
            for unit in units[known:]:
                key = (prev, unit.normalized)
                hit = data.get(key)
                if hit is None:
                    break
                data.move_to_end(key)
                prev = hit[0]
                out.append(prev)
                known += 1
    if known < len(units):
        new = []
        for unit in units[known:]:
            key = (prev, unit.normalized)
            prev = _h(f"{prev}\x1e{unit.normalized}")
            out.append(prev)
            new.append((key, prev, 1))
        _LINEAGE.put_many(new)
    result = tuple(out)
    with _recent_lock:
        _RECENT[first] = (tuple(units), result)
        _RECENT.move_to_end(first)
        if len(_RECENT) > _RECENT_MAX:
            _RECENT.popitem(last=False)
    return result


def _after_fork() -> None:
    global _recent_lock
    _recent_lock = threading.Lock()
    _RECENT.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
