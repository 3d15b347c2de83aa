"""What the demo prints and saves: a per-call table, totals per part and overall, and ``calls.json``.

All numbers come from the handler's ledger records (tokens as the provider reported them, costs as
the ledger priced them); per-part totals fold those records with `CacheStats.add`, the same
aggregation the ledger uses, so the rows add up to the ledger's own total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import reduce
from typing import Any

from ..accounting import CacheStats
from ._scenario import PARTS, LabelledCall

__all__ = ["call_table", "calls_document", "part_stats", "totals_table"]

_TOTAL_LABEL = "all parts"


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def _percent(part: float | Decimal | None, whole: float | Decimal | None) -> str:
    if part is None or not whole:
        return "n/a"
    return f"{100 * float(part) / float(whole):.1f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str, footer: int = 0) -> str:
    """Plain-text columns; ``align`` has one ``l``/``r`` per column; the last ``footer`` rows get a rule above."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if footer:
        body.insert(len(body) - footer, rule)
    return "\n".join([line(header), rule, *body])


def call_table(calls: Sequence[LabelledCall]) -> str:
    """One row per call, in scenario order."""
    header = ("#", "part", "call", "prompt", "cached", "hit %", "output", "cost", "saved")
    rows = []
    for seq, c in enumerate(calls, 1):
        usage, cost = c.record.usage, c.record.cost
        rows.append(
            (
                str(seq),
                c.part,
                str(c.call),
                str(usage.input_tokens),
                str(usage.cache_read_tokens),
                f"{100 * usage.hit_rate:.1f}",
                str(usage.output_tokens),
                _money(cost.total if cost else None),
                _money(cost.saved if cost else None),
            )
        )
    return format_table(header, rows, "rlrrrrrrr")


def part_stats(calls: Iterable[LabelledCall]) -> list[CacheStats]:
    """Totals per part, in scenario order (``CacheStats.model`` holds the part's key)."""
    by_part: dict[str, list[LabelledCall]] = {}
    for c in calls:
        by_part.setdefault(c.part, []).append(c)
    return [
        reduce(lambda s, c: s.add(c.record.usage, c.record.cost), by_part[p.key], CacheStats(model=p.key))
        for p in PARTS
        if p.key in by_part
    ]


def _totals_row(label: str, s: CacheStats) -> tuple[str, ...]:
    return (
        label,
        str(s.calls),
        str(s.input_tokens),
        str(s.cache_read_tokens),
        f"{100 * s.hit_rate:.1f}",
        _money(s.cost),
        _money(s.cost_without_caching),
        _money(s.saved),
        _percent(s.saved, s.cost_without_caching),
    )


def totals_table(parts: Sequence[CacheStats], total: CacheStats) -> str:
    """Per-part rows plus the overall row (the ledger's own total)."""
    header = ("part", "calls", "input", "cached", "hit %", "cost", "no-cache cost", "saved", "saved %")
    rows = [_totals_row(s.model, s) for s in parts] + [_totals_row(_TOTAL_LABEL, total)]
    return format_table(header, rows, "lrrrrrrrr", footer=1)


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _call_json(seq: int, c: LabelledCall) -> dict[str, Any]:
    usage, cost = c.record.usage, c.record.cost
    return {
        "seq": seq,
        "part": c.part,
        "call": c.call,
        "model": c.record.model,
        "provider": c.record.provider,
        "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
        "hit_rate": round(usage.hit_rate, 6),
        "cost_usd": _number(cost.total if cost else None),
        "cost_without_caching_usd": _number(cost.without_caching if cost else None),
        "saved_usd": _number(cost.saved if cost else None),
    }


def calls_document(calls: Sequence[LabelledCall], *, mode: str, model: str) -> dict[str, Any]:
    """The ``calls.json`` payload: run metadata plus one object per call (costs ``null`` when unpriced)."""
    return {
        "mode": mode,
        "model": model,
        "parts": [{"key": p.key, "title": p.title} for p in PARTS],
        "calls": [_call_json(seq, c) for seq, c in enumerate(calls, 1)],
    }
