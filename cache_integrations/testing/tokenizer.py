"""The emulator's tokenizer: deterministic, dependency-free and deliberately approximate.

Real providers use BPE vocabularies we cannot ship, and tests need numbers they can predict by hand.
Rule: a token is a run of word characters (``\\w+``, Unicode-aware) or one single non-space,
non-word character; whitespace is never a token. ``"Hello, world!"`` is 4 tokens. Counts are in the
same ballpark as real tokenizers for English prose (roughly 1.2-1.4x fewer tokens than BPE).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from threading import Lock

__all__ = ["Tokenizer", "count_tokens", "media_marker", "tokenize"]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Media (an image, a PDF, a video) renders into the prompt text as one marker that counts as the
# media's tokens: "\ue000<id>:<tokens>\ue001" (private-use characters, never in real text). The id
# comes first so two different media diverge right after the opening character.
_MEDIA_OPEN = "\ue000"
_MEDIA_RE = re.compile("\ue000([^\ue000\ue001:]*):(\\d+)\ue001")


def media_marker(media_id: str, tokens: int) -> str:
    """The prompt text standing for one piece of media worth `tokens` tokens."""
    return f"{_MEDIA_OPEN}{media_id}:{int(tokens)}\ue001"


def _count(text: str) -> int:
    if _MEDIA_OPEN not in text:
        return len(_TOKEN_RE.findall(text))
    media = sum(int(m.group(2)) for m in _MEDIA_RE.finditer(text))
    return media + len(_TOKEN_RE.findall(_MEDIA_RE.sub(" ", text)))


_WORD_CHAR_RE = re.compile(r"\w")


class Tokenizer:
    """Tokenizes text with the emulator rule and memoises counts of repeated segments.

    The memo matters because the same long system prompt or tool block is rendered into every request
    of a benchmark; counting it once keeps 20k-token prompts cheap.
    """

    def __init__(self, memo_size: int = 4096, memo_min_chars: int = 256, memo_max_chars: int = 32_000_000) -> None:
        self._memo: OrderedDict[str, int] = OrderedDict()
        self._memo_size = memo_size
        self._memo_min_chars = memo_min_chars
        self._memo_max_chars = memo_max_chars
        self._memo_chars = 0
        self._lock = Lock()

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Split ``text`` into tokens (words, numbers and single punctuation characters)."""
        return _TOKEN_RE.findall(text)

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (a media marker counts as its media's tokens); long segments are memoised."""
        if len(text) < self._memo_min_chars:
            return _count(text)
        with self._lock:
            hit = self._memo.get(text)
            if hit is not None:
                self._memo.move_to_end(text)
                return hit
        n = _count(text)
        if len(text) > self._memo_max_chars:
            return n
        with self._lock:
            if text not in self._memo:
                self._memo[text] = n
                self._memo_chars += len(text)
                while len(self._memo) > self._memo_size or self._memo_chars > self._memo_max_chars:
                    old, _ = self._memo.popitem(last=False)
                    self._memo_chars -= len(old)
        return n

    def count_all(self, segments: Iterable[str]) -> int:
        """Token count of segments joined by whitespace (counts are additive across whitespace)."""
        return sum(self.count(s) for s in segments)

    @staticmethod
    def truncate(text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` holding at most ``max_tokens`` tokens (no trailing space)."""
        if max_tokens <= 0:
            return ""
        end = 0
        for i, m in enumerate(_TOKEN_RE.finditer(text)):
            if i == max_tokens:
                return text[:end]
            end = m.end()
        return text

    @staticmethod
    def prefix_chars(text: str, tokens: int) -> int:
        """Characters of ``text`` up to the end of its first ``tokens`` tokens (all of it if shorter)."""
        if tokens <= 0:
            return 0
        for i, m in enumerate(_TOKEN_RE.finditer(text)):
            if i == tokens - 1:
                return m.end()
        return len(text)

    @staticmethod
    def split_chunks(text: str, tokens_per_chunk: int) -> list[str]:
        """Split ``text`` into pieces of ``tokens_per_chunk`` tokens whose concatenation is ``text``.

        Used for streaming: each SSE delta carries one piece, like a real model emitting tokens.
        """
        if not text:
            return []
        cuts: list[int] = []
        for i, m in enumerate(_TOKEN_RE.finditer(text)):
            if i and i % tokens_per_chunk == 0:
                cuts.append(m.start())
        pieces: list[str] = []
        start = 0
        for cut in cuts:
            pieces.append(text[start:cut])
            start = cut
        pieces.append(text[start:])
        return pieces


def is_word_char(ch: str) -> bool:
    """Whether ``ch`` continues a word token (used to snap a character prefix to a token boundary)."""
    return bool(_WORD_CHAR_RE.match(ch))


_DEFAULT = Tokenizer()


def tokenize(text: str) -> list[str]:
    """Split ``text`` into emulator tokens; see the module docstring for the rule."""
    return _DEFAULT.tokenize(text)


def count_tokens(text: str) -> int:
    """Number of emulator tokens in ``text``."""
    return _DEFAULT.count(text)
