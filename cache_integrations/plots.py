"""The cost plot: cumulative cost with and without caching, and each call's cached / uncached / written
prompt tokens, cache creations marked. Needs the ``plot`` extra (matplotlib).

Drawn on a bare `Figure` with the Agg canvas (no pyplot, no global backend switch), so it works headless
and never disturbs an application's own matplotlib setup. The handlers' ``plot()``, the demo's
``cost.png`` and the doctor's HTML page all draw it here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .pricing import Cost
from .usage import Usage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PlottedCall", "Section", "plot_calls"]

_SECTION_SHADES = ("#eaf1fb", "#fcf3e6", "#f2edf9", "#fbeef1")
_WITH_COLOUR = "#1f6fd1"
_WITHOUT_COLOUR = "#7a7a7a"
_CACHED_COLOUR = "#3a9d5d"
_UNCACHED_COLOUR = "#c9c9c9"
_WRITTEN_COLOUR = "#e39b3b"
_TITLE_CHARS = 110  # bold suptitle characters that fit on one line of the figure
_LABEL_CHARS_PER_CALL = 4  # bold 10 pt characters that fit in one call's width at the figure's size
_ANNOTATED_CREATIONS = 3  # cache creations labelled with text; later ones get the marker only


class PlottedCall(Protocol):
    """What the plot reads of a call: a `CallRecord` (the handlers' ``calls``) has both."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def cost(self) -> Cost | None: ...


class Section(NamedTuple):
    """A shaded, labelled run of calls (call numbers count from 1, both ends included)."""

    title: str
    first: int
    last: int


class _Group(NamedTuple):
    """Consecutive calls drawn as one bar when there are more calls than bars."""

    usage: Usage
    cost: Cost | None


def _grouped(calls: Sequence[_Group], size: int) -> list[_Group]:
    groups = []
    for start in range(0, len(calls), size):
        chunk = calls[start : start + size]
        usage = sum((c.usage for c in chunk[1:]), chunk[0].usage)
        costs = [c.cost for c in chunk if c.cost is not None]
        cost = sum(costs[1:], costs[0]) if len(costs) == len(chunk) else None
        groups.append(_Group(usage, cost))
    return groups


class _Series(NamedTuple):
    title: str
    ylabel: str
    with_caching: list[float]
    without_caching: list[float]
    unit: str


def _cumulative(calls: Sequence[_Group], what: str) -> _Series:
    """Cumulative USD when every call is priced; otherwise full-rate input tokens (never a guessed price)."""
    costs = [c.cost for c in calls]
    if all(cost is not None for cost in costs):
        with_ = [float(cost.total) for cost in costs if cost is not None]
        without = [float(cost.without_caching) for cost in costs if cost is not None]
        return _Series(
            f"cumulative {what} with and without caching",
            f"cumulative {what} (USD)",
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


def _shade(axes: Sequence[Axes], sections: Sequence[Section]) -> None:
    for i, (title, first, last) in enumerate(sections):
        left, right = first - 0.5, last + 0.5
        for ax in axes:
            ax.axvspan(left, right, color=_SECTION_SHADES[i % len(_SECTION_SHADES)], zorder=0, lw=0)
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
    ax.set_ylim(0, max(max(series.without_caching), max(series.with_caching), 1e-12) * 1.12)
    ax.grid(axis="y", alpha=0.3)


def _mark_creations(ax: Axes, x: list[int], calls: Sequence[_Group], series: _Series) -> None:
    """A marker on every call that wrote to a cache; text (tokens written, storage booked) on the first few."""
    created = [i for i, c in enumerate(calls) if c.usage.cache_write_tokens > 0]
    if not created:
        return
    ax.scatter(
        [x[i] for i in created],
        [series.with_caching[i] for i in created],
        marker="v",
        s=60,
        color=_WRITTEN_COLOUR,
        edgecolors="#7a4a10",
        zorder=5,
        label="cache written / created",
    )
    for i in created[:_ANNOTATED_CREATIONS]:
        usage, cost = calls[i].usage, calls[i].cost
        text = f"cache created: {usage.cache_write_tokens} tokens written"
        if cost is not None and cost.storage > 0 and usage.cache_storage_token_hours:
            hours = usage.cache_storage_token_hours / usage.cache_write_tokens
            text += f",\n{hours:g} h of storage booked ({_fmt(float(cost.storage), '$')})"
        at = (x[i], series.with_caching[i])
        ax.annotate(
            text, at, xytext=(8, -8), textcoords="offset points", ha="left", va="top", fontsize=8.5, color=_WITH_COLOUR
        )


def _draw_tokens(ax: Axes, x: list[int], calls: Sequence[_Group], xlabel: str) -> None:
    cached = [c.usage.cache_read_tokens for c in calls]
    written = [c.usage.cache_write_tokens for c in calls]
    uncached = [c.usage.uncached_input_tokens for c in calls]
    ax.bar(x, cached, color=_CACHED_COLOUR, width=0.7, label="cached prompt tokens")
    ax.bar(x, uncached, bottom=cached, color=_UNCACHED_COLOUR, width=0.7, label="uncached prompt tokens")
    if any(written):
        tops = [c + u for c, u in zip(cached, uncached, strict=True)]
        ax.bar(x, written, bottom=tops, color=_WRITTEN_COLOUR, width=0.7, label="written to a cache")
    ax.set_ylabel("prompt tokens per call")
    ax.set_xlabel(xlabel)
    if len(x) <= 60:
        ax.set_xticks(x)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)


def plot_calls(
    calls: Sequence[PlottedCall],
    path: str | Path | None = None,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    sections: Sequence[Section | tuple[str, int, int]] = (),
    what: str = "cost",
    xlabel: str = "call number",
    max_bars: int = 400,
) -> Figure:
    """Draw the two-panel cost plot of `calls` (oldest first) and return the `Figure`; write it to `path`
    (PNG, or any format matplotlib infers from the suffix) when given.

    `title` leads the figure's title; `subtitle` goes above the top panel; `sections` shade and label
    runs of calls; `what` names the money plotted (``"input cost"`` when output tokens are unknown).
    More calls than `max_bars` are drawn in groups of consecutive calls (totals unchanged).
    Raises ValueError when there are no calls.
    """
    if not calls:
        raise ValueError("plot: there are no calls to plot (the handler has recorded none yet)")
    # a call whose usage the provider did not report is drawn with zero tokens (and no cost)
    drawn = [_Group(c.usage or Usage(), c.cost) for c in calls]
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('plot() needs matplotlib: pip install "cache-integrations[plot]"') from exc

    size = -(-len(drawn) // max(max_bars, 1))
    if size > 1:
        drawn = _grouped(drawn, size)
        xlabel = f"{xlabel}, in groups of {size} calls"
        sections = [(t, (f - 1) // size + 1, (la - 1) // size + 1) for t, f, la in sections]
    x = list(range(1, len(drawn) + 1))
    fig = Figure(figsize=(12, 7.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    series = _cumulative(drawn, what)
    _draw_cumulative(top, x, series)
    _mark_creations(top, x, drawn, series)
    top.legend(loc="upper left", bbox_to_anchor=(0.0, 0.86), fontsize=9, framealpha=0.9)
    _draw_tokens(bottom, x, drawn, xlabel)
    _shade([top, bottom], [Section(*s) for s in sections])
    bottom.set_xlim(0.5, len(drawn) + max(1.8, len(drawn) * 0.05))
    if title:
        joint = " " if len(title) + len(series.title) < _TITLE_CHARS else "\n"
        fig.suptitle(f"{title}{joint}{series.title}", fontweight="bold")
    else:
        fig.suptitle(series.title[0].upper() + series.title[1:], fontweight="bold")
    if subtitle:
        top.set_title(subtitle, fontsize=9.5, color="#444444")
    if path is not None:
        fig.savefig(path)
    return fig
