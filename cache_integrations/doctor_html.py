"""``python -m cache_integrations doctor trace.jsonl --html report.html``: the doctor's report as one
self-contained page (inline CSS, the cost plot as an inline base64 PNG, no external URL), for people who
would rather look than read.

The page has the summary, the plot (cumulative input cost with and without caching, and cached / uncached
prompt tokens per call: a trace holds input tokens, not output), the hit rate over time, the causes of
misses with their fixes, and the miss table (one row per call that missed with a cause).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from .diagnostics import CAUSES
from .doctor import cause_stats, hit_rate_buckets
from .pricing import Cost, PriceBook, default_price_book
from .usage import Usage

__all__ = ["doctor_html", "write_doctor_html"]

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 2rem auto;
       max-width: 1200px; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.summary { color: #333; }
img.plot { width: 100%; height: auto; border: 1px solid #e3e3e3; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f7f9; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: .7rem; background: #3a9d5d; border-radius: 2px; }
.cause { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.fix { color: #0b5; }
.none { color: #666; font-style: italic; }
"""


@dataclass(frozen=True, slots=True)
class _TracedCall:
    usage: Usage
    cost: Cost | None


def _traced_calls(records: Sequence[dict[str, Any]], prices: PriceBook) -> list[_TracedCall]:
    """A trace's calls for the plot: input and cached tokens as reported; input cost priced by model."""
    out = []
    for r in records:
        usage = Usage(
            input_tokens=int(r.get("input_tokens") or 0), cache_read_tokens=int(r.get("reported_cached_tokens") or 0)
        )
        model = str(r.get("model") or "")
        out.append(_TracedCall(usage, prices.cost(usage, model) if model else None))
    return out


def _plot_png(records: Sequence[dict[str, Any]], prices: PriceBook) -> bytes | None:
    try:
        from .plots import plot_calls

        figure = plot_calls(
            _traced_calls(records, prices),
            title="Prompt cache doctor:",
            subtitle="output tokens are not in a trace: input cost only",
            what="input cost",
        )
    except ImportError:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def _usd(value: Any) -> str:
    return "n/a" if value is None else f"${Decimal(str(value)):.6f}"


def _cell(value: Any, num: bool = False) -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="num">{text}</td>' if num else f"<td>{text}</td>"


def doctor_html(records: list[dict[str, Any]], *, buckets: int = 8, prices: PriceBook | None = None) -> str:
    """The report page for a trace's records (see `cache_integrations.doctor.load_trace`)."""
    prices = prices or default_price_book()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Prompt cache doctor</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Prompt cache doctor</h1>",
    ]
    if not records:
        parts += ['<p class="summary none">The trace is empty: no calls were recorded.</p>', "</body></html>"]
        return "\n".join(parts)
    conversations = {r.get("conversation") for r in records}
    inputs = sum(int(r.get("input_tokens") or 0) for r in records)
    cached = sum(int(r.get("reported_cached_tokens") or 0) for r in records)
    expected = sum(int(r.get("expected_cacheable_tokens") or 0) for r in records)
    parts.append(
        f'<p class="summary" id="summary">{len(records)} calls in {len(conversations)} conversation(s); '
        f"{inputs} input tokens, {cached} served from cache ({_pct(cached, inputs)} %). Whole messages each call "
        f"shared with the previous one of its conversation: {expected} tokens; the provider served "
        f"{_pct(min(cached, expected), expected)} % of those.</p>"
    )

    parts.append("<h2>Cost with and without caching</h2>")
    png = _plot_png(records, prices)
    if png is None:
        parts.append('<p class="none">The plot needs matplotlib: pip install "cache-integrations[plot]".</p>')
    else:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<img class="plot" id="cost-plot" alt="Cumulative input cost with and without caching, and cached '
            f'and uncached prompt tokens per call" src="data:image/png;base64,{data}">'
        )

    parts += [
        "<h2>Hit rate over time</h2>",
        '<table id="hit-rate"><thead><tr><th>calls</th><th class="num">input</th><th class="num">cached</th>'
        '<th class="num">hit %</th><th></th></tr></thead><tbody>',
    ]
    for first, last, i_tokens, c_tokens in hit_rate_buckets(records, buckets):
        width = round(200 * c_tokens / i_tokens) if i_tokens else 0
        parts.append(
            f"<tr><td>calls {first}-{last}</td>{_cell(i_tokens, True)}{_cell(c_tokens, True)}"
            f'{_cell(_pct(c_tokens, i_tokens), True)}<td><span class="bar" style="width:{width}px"></span></td></tr>'
        )
    parts.append("</tbody></table>")

    ranked = cause_stats(records)
    parts.append("<h2>Causes of misses</h2>")
    if not ranked:
        parts.append('<p class="none" id="no-misses">No cache misses with a cause: every prefix was stable.</p>')
    else:
        parts.append(
            '<table id="causes"><thead><tr><th>cause</th><th class="num">calls</th><th class="num">tokens lost</th>'
            '<th class="num">money lost</th><th>what happened</th><th>fix</th></tr></thead><tbody>'
        )
        for name, s in ranked:
            what, fix = CAUSES.get(name, (name, ""))
            money = f"${s.lost_usd:.6f}" + (" (+unpriced)" if s.unpriced else "")
            parts.append(
                f'<tr><td class="cause">{escape(name)}</td>{_cell(s.calls, True)}{_cell(s.lost_tokens, True)}'
                f'{_cell(money, True)}{_cell(what)}<td class="fix">{escape(fix)}</td></tr>'
            )
        parts.append("</tbody></table>")

    misses = [(n, r) for n, r in enumerate(records, 1) if r.get("cause")]
    parts.append(f"<h2>Misses ({len(misses)})</h2>")
    if misses:
        parts.append(
            '<table id="misses"><thead><tr><th class="num">#</th><th>conversation</th><th class="num">call</th>'
            '<th>model</th><th>cause</th><th class="num">message</th><th class="num">character</th>'
            '<th class="num">input</th><th class="num">cached</th><th class="num">tokens lost</th>'
            '<th class="num">money lost</th><th>detail</th></tr></thead><tbody>'
        )
        for n, r in misses:
            parts.append(
                f"<tr>{_cell(n, True)}{_cell(r.get('conversation'))}{_cell(r.get('call_index'), True)}"
                f'{_cell(r.get("model"))}<td class="cause">{escape(str(r.get("cause")))}</td>'
                f"{_cell(r.get('message_index'), True)}{_cell(r.get('char_offset'), True)}"
                f"{_cell(r.get('input_tokens'), True)}{_cell(r.get('reported_cached_tokens'), True)}"
                f"{_cell(r.get('lost_tokens'), True)}{_cell(_usd(r.get('lost_usd')), True)}"
                f"{_cell(r.get('detail'))}</tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_doctor_html(
    records: list[dict[str, Any]], path: str | Path, *, buckets: int = 8, prices: PriceBook | None = None
) -> Path:
    """Write `doctor_html` to `path` (UTF-8); returns the path."""
    out = Path(path)
    out.write_text(doctor_html(records, buckets=buckets, prices=prices), encoding="utf-8")
    return out
