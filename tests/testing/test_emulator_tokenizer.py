from __future__ import annotations

import time

from cache_integrations.testing import Tokenizer, count_tokens, tokenize


def test_rule_words_numbers_and_single_punctuation() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert tokenize("  x1 = 42 ;  ") == ["x1", "=", "42", ";"]
    assert tokenize('{"a":1}') == ["{", '"', "a", '"', ":", "1", "}"]
    assert count_tokens("") == 0
    assert count_tokens("naïve café 東京") == 3


def test_truncate_and_split_preserve_text() -> None:
    tok = Tokenizer()
    text = "One two, three. Four five six!"
    assert tok.truncate(text, 3) == "One two,"
    assert tok.truncate(text, 0) == ""
    assert tok.truncate(text, 100) == text
    pieces = tok.split_chunks(text, 2)
    assert "".join(pieces) == text
    assert [count_tokens(p) for p in pieces] == [2, 2, 2, 2, 1]


def test_counts_are_additive_across_whitespace() -> None:
    a, b = "alpha beta.", "<|user|>\ngamma"
    assert count_tokens(a + "\n" + b) == count_tokens(a) + count_tokens(b)


def test_fast_on_100k_tokens() -> None:
    text = "lorem ipsum, dolor sit amet. " * 16_000
    start = time.perf_counter()
    n = count_tokens(text)
    assert n == 112_000
    assert time.perf_counter() - start < 0.5
    tok = Tokenizer()
    assert tok.count(text) == n
    assert tok.count(text) == n  # memoised
