"""``cost.png``: the library's cost plot (`cache_integrations.plots`) of the scenario's calls, one shaded
section per part."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..plots import Section, plot_calls
from ._scenario import PARTS, LabelledCall

__all__ = ["write_cost_plot"]


def _sections(calls: Sequence[LabelledCall]) -> list[Section]:
    """Each part's title and its first and last call numbers."""
    sections = []
    for part in PARTS:
        seqs = [i for i, c in enumerate(calls, 1) if c.part == part.key]
        if seqs:
            sections.append(Section(part.title, seqs[0], seqs[-1]))
    return sections


def write_cost_plot(calls: Sequence[LabelledCall], path: Path, *, subtitle: str) -> None:
    """Write the two-panel PNG to ``path``."""
    plot_calls(
        [c.record for c in calls],
        path,
        title="Prompt caching with ChatGLM and ChatGemini:",
        subtitle=subtitle,
        sections=_sections(calls),
        xlabel="call number (scenario order)",
    )
