"""Bounded, thread-safe memos for the hot path: work done once per distinct message, not once per call.

A conversation re-sends its whole history on every call; converting, validating, encoding and hashing every
message again makes a call cost O(history). The pieces here let each of those steps run once per distinct
message and be looked up afterwards:

* `Memo`: a least-recently-used map bounded by entry count and by total weight (about the characters it
  holds), one lock per batch of lookups rather than per lookup.
* `facts_of`: the `MessageFacts` of each neutral `Message` of a request, keyed by the message's identity (the
  entry holds the message, so its id cannot be reused while the entry lives). Messages are immutable (frozen
  dataclasses; a `ToolCall`'s ``arguments`` must not be mutated once the message is built: the adapters hand
  the core copies they own), so whatever is derived from one stays true. Messages that read a local file when
  encoded (a `MediaPart` with a ``path``) are never memoized: the file may change between calls.
* `chain_step`: the SHA-256 fingerprint chain (`layout.fingerprint_chain`) extended one segment at a time from
  the last known prefix, so an unchanged prefix is never hashed again.

After ``os.fork()`` the child starts with empty memos and fresh locks (`os.register_at_fork`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from .messages import MediaPart, Message

__all__ = [
    "FACTS",
    "Memo",
    "MessageFacts",
    "Unfreezable",
    "chain_of",
    "facts_of",
    "freeze",
    "memo_stats",
]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Memo(Generic[_K, _V]):
    """A thread-safe LRU map holding at most `max_entries` entries and `max_weight` total weight."""

    __slots__ = ("_data", "_lock", "_weight", "max_entries", "max_weight", "name")

    def __init__(self, name: str, *, max_entries: int, max_weight: int) -> None:
        self.name = name
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._data: OrderedDict[_K, tuple[_V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def weight(self) -> int:
        return self._weight

    def get(self, key: _K) -> _V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def get_many(self, keys: Sequence[_K | None]) -> list[_V | None]:
        """Each key's value (None when absent, or when the key is None), under one lock; hits become the most
        recently used."""
        out: list[_V | None] = []
        append = out.append
        with self._lock:
            data = self._data
            get = data.get
            move = data.move_to_end
            for key in keys:
                hit = get(key)  # type: ignore[arg-type]
                if hit is None:
                    append(None)
                else:
                    move(key)  # type: ignore[arg-type]
                    append(hit[0])
        return out

    def put(self, key: _K, value: _V, weight: int = 1) -> None:
        self.put_many(((key, value, weight),))

    def put_many(self, items: Sequence[tuple[_K, _V, int]]) -> None:
        with self._lock:
            data = self._data
            for key, value, weight in items:
                old = data.pop(key, None)
                if old is not None:
                    self._weight -= old[1]
                data[key] = (value, weight)
                self._weight += weight
            while data and (len(data) > self.max_entries or self._weight > self.max_weight):
                self._weight -= data.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._weight = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._data = OrderedDict()
        self._weight = 0


class Unfreezable(Exception):
    """A value `freeze` cannot turn into a key (an object of a type it does not know)."""


def freeze(value: Any) -> Hashable:
    """`value` (JSON-like: dicts, lists, str, numbers, bools, None) as a hashable key.

    Equal keys mean values that convert and encode alike: bools, ints and floats are told apart (Python
    has ``True == 1 == 1.0``; JSON does not), floats by their repr (``-0.0`` is not ``0.0``), dicts keep
    their order (a reordered dict is only a miss). Anything else raises `Unfreezable`.
    """
    kind = type(value)
    if kind is str or value is None:
        frozen: Hashable = value
        return frozen
    if kind is dict:
        return ("d", *((k if type(k) is str else freeze(k), freeze(v)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return ("l", *(freeze(v) for v in value))
    if kind is bool:
        return ("b", value)
    if kind is int:
        return ("i", value)
    if kind is float:
        return ("f", repr(value))
    raise Unfreezable(kind.__name__)


class MessageFacts:
    """What the hot path derives from one message, filled in as the steps need it.

    Each field is a pure function of the (immutable) message; two threads filling one field at once compute
    the same value, so fields are written without a lock.
    """

    __slots__ = ("gemini", "glm", "message", "unit", "valid")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.valid = False
        """`validation` found no lone surrogate in its text."""
        self.glm: Any = None
        """GLM: (model, segment bytes) or, for a message with media, {model: segment bytes}."""
        self.gemini: Any = None
        """Gemini: (wire content dict, segment bytes) of a message that is one content on its own."""
        self.unit: Any = None
        """Diagnostics: its `Unit` (hashes, length, text)."""


def _weight(message: Message) -> int:
    content = message.content
    size = len(content) if isinstance(content, str) else sum(len(getattr(p, "text", "")) + 64 for p in content)
    for part in () if isinstance(content, str) else content:
        data = getattr(part, "data", None)
        if data is not None:
            size += len(data)
    return 3 * size + 256  # the segment and the unit text hold about a copy each, plus the overhead


def _memoizable(message: Message) -> bool:
    content = message.content
    return isinstance(content, str) or not any(isinstance(p, MediaPart) and p.path is not None for p in content)


FACTS: Memo[int, MessageFacts] = Memo("message facts", max_entries=100_000, max_weight=64 * 1024 * 1024)
"""Per-message facts by message identity (at most 100,000 messages, about 64 MB of text)."""


# The facts of the latest requests' message tuples (several steps of one call look at the same tuple).
_RECENT_FACTS: OrderedDict[int, tuple[Sequence[Message], list[MessageFacts]]] = OrderedDict()
_RECENT_MAX = 16
_recent_lock = threading.Lock()


def facts_of(messages: Sequence[Message]) -> list[MessageFacts]:
    """The facts of each message (new, empty facts for messages not seen before), one lock per call."""
    if type(messages) is tuple:
        with _recent_lock:
            recent = _RECENT_FACTS.get(id(messages))
        if recent is not None and recent[0] is messages:
            return recent[1]
    found = FACTS.get_many([id(m) for m in messages])
    new: list[tuple[int, MessageFacts, int]] = []
    out: list[MessageFacts] = []
    for message, facts in zip(messages, found, strict=True):
        if facts is None or facts.message is not message:
            facts = MessageFacts(message)
            if _memoizable(message):
                new.append((id(message), facts, _weight(message)))
        out.append(facts)
    if new:
        FACTS.put_many(new)
    if type(messages) is tuple:
        with _recent_lock:
            _RECENT_FACTS[id(messages)] = (messages, out)
            _RECENT_FACTS.move_to_end(id(messages))
            if len(_RECENT_FACTS) > _RECENT_MAX:
                _RECENT_FACTS.popitem(last=False)
    return out


_CHAIN: Memo[tuple[str, bytes], tuple[str, Any]] = Memo(
    "fingerprint chain", max_entries=100_000, max_weight=64 * 1024 * 1024
)


# The latest chains by their first digest: a call that re-sends the previous call's segments (the same bytes
# objects, from the message facts) reuses that chain up to where they differ, comparing identities only.
_RECENT_CHAINS: OrderedDict[str, tuple[Sequence[bytes], list[str]]] = OrderedDict()
_chains_lock = threading.Lock()


def chain_of(header: bytes, segments: Sequence[bytes]) -> list[str]:
    """`layout.fingerprint_chain(header, segments)`, hashing only the segments after the longest prefix
    already hashed (by any earlier call): element 0 covers `header`, element i+1 also segments[0..i]."""
    start = hashlib.sha256(header)
    first = start.hexdigest()
    if not segments:
        return [first]
    with _chains_lock:
        recent = _RECENT_CHAINS.get(first)
    known = 0
    if recent is not None:
        before, chain = recent
        limit = min(len(before), len(segments))
        while known < limit and before[known] is segments[known]:
            known += 1
        if known == len(segments):
            out = chain[: known + 1]
            _remember_chain(first, segments, out)
            return out
        out = chain[: known + 1]
    else:
        out = [first]
    digest = out[-1]
    state: Any = None
    # Walk the rest of the known prefix: each step is keyed by the digest before it and the segment's bytes.
    with _CHAIN._lock:
        data = _CHAIN._data
        if known:
            hit = data.get((out[-2], segments[known - 1]))
            if hit is None:  # evicted meanwhile: start over from the header
                known, out, digest = 0, [first], first
            else:
                state = hit[0][1]
        for seg in segments[known:]:
            hit = data.get((digest, seg))
            if hit is None:
                break
            data.move_to_end((digest, seg))
            digest, state = hit[0]
            out.append(digest)
            known += 1
    if known < len(segments):
        new: list[tuple[tuple[str, bytes], tuple[str, Any], int]] = []
        h = (state if state is not None else start).copy()
        for seg in segments[known:]:
            h.update(b"\x1e")
            h.update(seg)
            step = h.copy()
            digest = step.hexdigest()
            new.append(((out[-1], seg), (digest, step), len(seg) + 512))
            out.append(digest)
        _CHAIN.put_many(new)
    _remember_chain(first, segments, out)
    return out


def _remember_chain(first: str, segments: Sequence[bytes], chain: list[str]) -> None:
    with _chains_lock:
        _RECENT_CHAINS[first] = (tuple(segments), chain)
        _RECENT_CHAINS.move_to_end(first)
        if len(_RECENT_CHAINS) > _RECENT_MAX:
            _RECENT_CHAINS.popitem(last=False)


def memo_stats() -> dict[str, tuple[int, int]]:
    """(entries, weight) of each hot-path memo: what the bounds apply to."""
    return {memo.name: (len(memo), memo.weight) for memo in _MEMOS}


_MEMOS: list[Memo[Any, Any]] = [FACTS, _CHAIN]


def register(memo: Memo[Any, Any]) -> None:
    """Count `memo` among the hot-path memos (stats, emptied in a forked child)."""
    _MEMOS.append(memo)


def _after_fork() -> None:
    global _recent_lock, _chains_lock
    for memo in _MEMOS:
        memo._after_fork()
    _recent_lock = threading.Lock()
    _RECENT_FACTS.clear()
    _chains_lock = threading.Lock()
    _RECENT_CHAINS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def memoized(memo: Memo[_K, _V], key: _K, make: Callable[[], _V], weight: int = 1) -> _V:
    """`memo[key]`, made by `make()` (and remembered) when absent."""
    hit = memo.get(key)
    if hit is None:
        hit = make()
        memo.put(key, hit, weight)
    return hit
