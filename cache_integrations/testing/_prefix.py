"""Implicit prefix cache: "how much of this prompt did the provider already see recently?".

Prompts are indexed by chained hashes of fixed-size character blocks, so finding the longest shared
prefix among hundreds of 20k-token prompts costs a few dict lookups plus one short string compare.
The character match is then snapped back to a token boundary and converted to tokens. Matching is on
the rendered text, so whitespace differences break a match (as they do with real tokenizers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .rules import CacheRules
from .tokenizer import Tokenizer, is_word_char

BLOCK_CHARS = 256
_MAX_SCAN_CANDIDATES = 64


@dataclass(eq=False)
class _Entry:
    key: int
    text: str
    hashes: list[int]
    expires_at: float


@dataclass
class _Scope:
    entries: dict[int, _Entry] = field(default_factory=dict)
    by_hash: dict[int, dict[int, _Entry]] = field(default_factory=dict)


def _block_hashes(text: str) -> list[int]:
    out: list[int] = []
    h = 0
    for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        h = hash((h, text[start : start + BLOCK_CHARS]))
        out.append(h)
    return out


def _common_prefix_len(a: str, b: str) -> int:
    """Length of the common prefix of two short strings (binary search on C-level slice compares)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _snap(new: str, old: str, n: int) -> int:
    """Move a shared character prefix length back so it does not end inside a word token."""
    while n > 0 and is_word_char(new[n - 1]):
        cont_new = n < len(new) and is_word_char(new[n])
        cont_old = n < len(old) and is_word_char(old[n])
        if not (cont_new or cont_old):
            break
        n -= 1
    return n


def _noop(_: float) -> None:
    return None


@dataclass(frozen=True)
class PrefixMatch:
    """Result of one observation: raw matched tokens and what the rule set lets us report."""

    matched_tokens: int
    reported_tokens: int


class PrefixCache:
    """All implicit caches of one emulator, partitioned by scope (endpoint, API key, model).

    Not thread-safe on its own: the emulator calls it under its lock.
    """

    def __init__(self, tokenizer: Tokenizer, max_entries: int = 1000) -> None:
        self._tok = tokenizer
        self._scopes: dict[Hashable, _Scope] = {}
        self._order: OrderedDict[int, Hashable] = OrderedDict()
        self._next_key = 0
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._order)

    def clear(self) -> None:
        self._scopes.clear()
        self._order.clear()

    def _remove(self, scope: _Scope, entry: _Entry) -> None:
        scope.entries.pop(entry.key, None)
        for h in entry.hashes:
            bucket = scope.by_hash.get(h)
            if bucket is not None:
                bucket.pop(entry.key, None)
                if not bucket:
                    del scope.by_hash[h]
        self._order.pop(entry.key, None)

    def _purge(self, scope: _Scope, now: float) -> None:
        for entry in [e for e in scope.entries.values() if e.expires_at <= now]:
            self._remove(scope, entry)

    def observe(self, scope_key: Hashable, text: str, total_tokens: int, now: float, rules: CacheRules) -> PrefixMatch:
        """Report the cached prefix of ``text`` and remember ``text`` for later requests."""
        match, commit = self.observe_deferred(scope_key, text, total_tokens, now, rules)
        commit(now)
        return match

    def observe_deferred(
        self, scope_key: Hashable, text: str, total_tokens: int, now: float, rules: CacheRules
    ) -> tuple[PrefixMatch, Callable[[float], None]]:
        """Report the cached prefix of ``text`` now; remember ``text`` only when ``commit(now)`` is called.

        Real servers make a prompt's prefix reusable only once the request that wrote it has finished,
        so requests that overlap in time all miss; the emulator commits when the answer is delivered.
        """
        if not rules.enabled:
            return PrefixMatch(0, 0), _noop
        scope = self._scopes.setdefault(scope_key, _Scope())
        self._purge(scope, now)
        hashes = _block_hashes(text)
        k = 0
        while k < len(hashes) and hashes[k] in scope.by_hash:
            k += 1
        if k:
            candidates = list(scope.by_hash[hashes[k - 1]].values())
        else:
            candidates = list(scope.entries.values())[-_MAX_SCAN_CANDIDATES:]
        base = k * BLOCK_CHARS
        best: _Entry | None = None
        best_chars = 0
        window = text[base : base + BLOCK_CHARS]
        for entry in candidates:
            ext = _common_prefix_len(window, entry.text[base : base + BLOCK_CHARS])
            chars = _snap(text, entry.text, base + ext)
            if best is None or chars >= best_chars:
                best, best_chars = entry, chars
        matched = 0
        if best is not None and best_chars > 0:
            if best_chars * 2 >= len(text):
                matched = total_tokens - self._tok.count(text[best_chars:])
            else:
                matched = self._tok.count(text[:best_chars])
        reported = rules.reportable(matched)

        def commit(at: float) -> None:
            current = self._scopes.setdefault(scope_key, _Scope())
            expires = at + rules.ttl_seconds
            if best is not None and current.entries.get(best.key) is best:
                if best_chars == len(best.text):
                    self._remove(current, best)  # the new prompt contains it entirely and outlives it
                elif reported > 0:
                    best.expires_at = max(best.expires_at, expires)
            self._store(scope_key, current, text, hashes, expires)

        return PrefixMatch(matched, reported), commit

    def _store(self, scope_key: Hashable, scope: _Scope, text: str, hashes: list[int], expires: float) -> None:
        key = self._next_key
        self._next_key += 1
        entry = _Entry(key, text, hashes, expires)
        scope.entries[key] = entry
        for h in hashes:
            scope.by_hash.setdefault(h, {})[key] = entry
        self._order[key] = scope_key
        while len(self._order) > self.max_entries:
            old_key, old_scope_key = next(iter(self._order.items()))
            old_scope = self._scopes[old_scope_key]
            self._remove(old_scope, old_scope.entries[old_key])
