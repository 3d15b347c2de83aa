"""``cost.png``: cumulative cost with and without caching, and each call's cached share of the prompt.

Drawn on a bare `Figure` with the Agg canvas (no pyplot, no global backend switch), so it works
headless and never disturbs an application's own matplotlib setup.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ._scenario import PARTS, LabelledCall

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["write_cost_plot"]

_PART_SHADES = ("#eaf1fb", "#fcf3e6", "#f2edf9", "#fbeef1")
_WITH_COLOUR = "#1f6fd1"
_WITHOUT_COLOUR = "#7a7a7a"
_CACHED_COLOUR = "#3a9d5d"
_UNCACHED_COLOUR = "#c9c9c9"
_WRITTEN_COLOUR = "#e39b3b"
_TITLE_CHARS = 110  # bold suptitle characters that fit on one line of the figure
_LABEL_CHARS_PER_CALL = 4  # bold 10 pt characters that fit in one call's width at the figure's size


class _Series(NamedTuple):
    title: str
    ylabel: str
    with_caching: list[float]
    without_caching: list[float]
    unit: str


def _cumulative(calls: Sequence[LabelledCall]) -> _Series:
    """Cumulative USD when every call is priced; otherwise full-rate input tokens (never a guessed price)."""
    costs = [c.record.cost for c in calls]
    if all(cost is not None for cost in costs):
        with_ = [float(cost.total) for cost in costs if cost is not None]
        without = [float(cost.without_caching) for cost in costs if cost is not None]
        return _Series(
            "cumulative cost with and without caching",
            "cumulative cost (USD)",
            list(accumulate(with_)),
            list(accumulate(without)),
            "$",
        )
    # Cache writes are billed at the input rate (or above), so they count as full-rate tokens; without
    # caching, an explicit cache's writes would not exist, hence the usage's own no-cache baseline.
    full_rate = [c.usage.uncached_input_tokens + c.usage.cache_write_tokens for c in calls]
    total = [c.usage.input_without_caching for c in calls]
    return _Series(
        "input tokens billed at the full rate, with and without caching (a model has no known price)",
        "cumulative input tokens at the full rate",
        [float(v) for v in accumulate(full_rate)],
        [float(v) for v in accumulate(total)],
        "",
    )


def _part_spans(calls: Sequence[LabelledCall]) -> list[tuple[str, float, float]]:
    """(title, left edge, right edge) of each part in call-number coordinates."""
    spans = []
    for part in PARTS:
        seqs = [i for i, c in enumerate(calls, 1) if c.part == part.key]
        if seqs:
            spans.append((part.title, seqs[0] - 0.5, seqs[-1] + 0.5))
    return spans


def _shade_parts(axes: Sequence[Axes], spans: Sequence[tuple[str, float, float]]) -> None:
    for i, (title, left, right) in enumerate(spans):
        for ax in axes:
            ax.axvspan(left, right, color=_PART_SHADES[i % len(_PART_SHADES)], zorder=0, lw=0)
            if i:
                ax.axvline(left, color="#9a9a9a", lw=0.8, ls=":", zorder=1)
        label_at = axes[0].get_xaxis_transform()
        label = textwrap.fill(title, width=max(10, int((right - left) * _LABEL_CHARS_PER_CALL)))
        axes[0].text((left + right) / 2, 0.97, label, transform=label_at, ha="center", va="top", fontweight="bold")


def _fmt(value: float, unit: str) -> str:
    return f"${value:.4f}" if unit == "$" else f"{value:,.0f}"


def _draw_cumulative(ax: Axes, x: list[int], series: _Series) -> None:
    ax.plot(x, series.without_caching, color=_WITHOUT_COLOUR, ls="--", marker="o", ms=3, label="without caching")
    ax.plot(x, series.with_caching, color=_WITH_COLOUR, marker="o", ms=3.5, lw=2, label="with caching")
    ax.fill_between(x, series.with_caching, series.without_caching, color=_CACHED_COLOUR, alpha=0.15, label="saved")
    for values, colour in ((series.without_caching, _WITHOUT_COLOUR), (series.with_caching, _WITH_COLOUR)):
        end = (x[-1], values[-1])
        ax.annotate(
            _fmt(end[1], series.unit), end, xytext=(6, 0), textcoords="offset points", va="center", color=colour
        )
    ax.set_ylabel(series.ylabel)
    ax.set_ylim(0, max(series.without_caching) * 1.12)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86), fontsize=9, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)


def _mark_storage(ax: Axes, x: list[int], calls: Sequence[LabelledCall], series: _Series) -> None:
    """Label the step where a call booked explicit-cache storage (the pin's first question)."""
    if series.unit != "$":
        return
    for i, c in enumerate(calls):
        usage, cost = c.usage, c.record.cost
        if cost is None or cost.storage <= 0:
            continue
        text = f"cache created: {usage.cache_write_tokens} tokens written"
        if usage.cache_write_tokens:
            hours = usage.cache_storage_token_hours / usage.cache_write_tokens
            text += f",\n{hours:g} h of storage booked ({_fmt(float(cost.storage), '$')})"
        at = (x[i], series.with_caching[i])
        ax.annotate(
            text, at, xytext=(8, -8), textcoords="offset points", ha="left", va="top", fontsize=8.5, color=_WITH_COLOUR
        )


def _draw_tokens(ax: Axes, x: list[int], calls: Sequence[LabelledCall]) -> None:
    cached = [c.usage.cache_read_tokens for c in calls]
    written = [c.usage.cache_write_tokens for c in calls]
    uncached = [u.input_tokens - u.cache_read_tokens - u.cache_write_tokens for u in (c.usage for c in calls)]
    ax.bar(x, cached, color=_CACHED_COLOUR, width=0.7, label="cached prompt tokens")
    ax.bar(x, uncached, bottom=cached, color=_UNCACHED_COLOUR, width=0.7, label="uncached prompt tokens")
    if any(written):
        tops = [c + u for c, u in zip(cached, uncached, strict=True)]
        ax.bar(x, written, bottom=tops, color=_WRITTEN_COLOUR, width=0.7, label="written to an explicit cache")
    ax.set_ylabel("prompt tokens per call")
    ax.set_xlabel("call number (scenario order)")
    ax.set_xticks(x)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)


def write_cost_plot(calls: Sequence[LabelledCall], path: Path, *, subtitle: str) -> None:
    """Write the two-panel PNG to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = list(range(1, len(calls) + 1))
    fig = Figure(figsize=(12, 7.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    series = _cumulative(calls)
    _draw_cumulative(top, x, series)
    _mark_storage(top, x, calls, series)
    _draw_tokens(bottom, x, calls)
    _shade_parts([top, bottom], _part_spans(calls))
    bottom.set_xlim(0.5, len(calls) + 1.8)
    lead = "Prompt caching with ChatGLM and ChatGemini:"
    joint = " " if len(lead) + len(series.title) < _TITLE_CHARS else "\n"
    fig.suptitle(f"{lead}{joint}{series.title}", fontweight="bold")
    top.set_title(subtitle, fontsize=9.5, color="#444444")
    fig.savefig(path)
