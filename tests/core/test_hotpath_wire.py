"""Behaviour unchanged by the hot-path work (issue 15): the same bytes on the wire and the same diagnoses.

``data/hotpath_golden.json`` was produced by the code without that work (commit 5c2459e, then main c504af8) from the
corpus in
`hotpath_corpus` (grown, edited, truncated, re-timestamped and mutated-in-place conversations, tool calls, media,
explicit-cache payloads, ChatGLM / ChatGemini / LlamaIndex GLM on the emulator with the handlers attached).
The corpus runs twice in one process: once with the memos cold, once warm (every message already seen).
"""

from __future__ import annotations

import json

from .hotpath_corpus import GOLDEN, golden


def _differences(expected: dict[str, object], got: dict[str, object]) -> list[str]:
    keys = sorted(set(expected) | set(got))
    return [f"{k}: expected {expected.get(k)!r}, got {got.get(k)!r}" for k in keys if expected.get(k) != got.get(k)]


def test_same_bytes_and_diagnoses_as_before_with_cold_and_warm_memos() -> None:
    expected = json.loads(GOLDEN.read_text())
    cold = golden()
    assert _differences(expected, cold)[:20] == []
    warm = golden()
    assert _differences(expected, warm)[:20] == []
