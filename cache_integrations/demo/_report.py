"""What the demo prints and saves: a per-call table, totals per part and overall, and ``calls.json``.

All numbers come from the handler's ledger records (tokens as the provider reported them, costs as
the ledger priced them); per-part totals fold those records with `CacheStats.add`, the same
aggregation the ledger uses, so the rows add up to the ledger's own total. Costs include explicit-cache
storage (part 4), so every "saved" is net of cache writes and storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from functools import reduce
from typing import Any

from ..accounting import CacheStats
from ._scenario import PARTS, LabelledCall, PinnedCache, Scenario

__all__ = ["call_table", "calls_document", "part_stats", "pinned_summary", "totals_table"]

_TOTAL_LABEL = "all parts"


def _money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    return f"-${-value:.6f}" if value < 0 else f"${value:.6f}"


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
    header = ("#", "part", "call", "prompt", "cached", "written", "hit %", "output", "cost", "saved")
    rows = []
    for seq, c in enumerate(calls, 1):
        usage, cost = c.usage, c.record.cost
        rows.append(
            (
                str(seq),
                c.part,
                str(c.call),
                str(usage.input_tokens),
                str(usage.cache_read_tokens),
                str(usage.cache_write_tokens),
                f"{100 * usage.hit_rate:.1f}",
                str(usage.output_tokens),
                _money(cost.total if cost else None),
                _money(cost.saved if cost else None),
            )
        )
    return format_table(header, rows, "rlrrrrrrrr")


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
    # A row with an unpriced call would add up only part of its money: print n/a rather than a partial sum.
    priced = s.unpriced_calls == 0
    cost, without, storage, saved = (
        v if priced else None for v in (s.cost, s.cost_without_caching, s.storage_cost, s.saved)
    )
    return (
        label,
        str(s.calls),
        str(s.input_tokens),
        str(s.cache_read_tokens),
        f"{100 * s.hit_rate:.1f}",
        _money(cost),
        _money(storage),
        _money(without),
        _money(saved),
        _percent(saved, without),
    )


def totals_table(parts: Sequence[CacheStats], total: CacheStats) -> str:
    """Per-part rows plus the overall row (the ledger's own total); cost includes storage."""
    header = ("part", "calls", "input", "cached", "hit %", "cost", "storage", "no-cache cost", "saved", "saved %")
    rows = [_totals_row(s.model, s) for s in parts] + [_totals_row(_TOTAL_LABEL, total)]
    return format_table(header, rows, "lrrrrrrrrr", footer=1)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def pinned_summary(pinned: PinnedCache, stats: CacheStats) -> str:
    """Two lines on part 4's cache: what it held and what it netted, then that it was deleted."""
    expiry = pinned.expire_time.strftime("%Y-%m-%d %H:%M:%S UTC")
    saved = stats.saved if stats.unpriced_calls == 0 else None
    percent = _percent(saved, stats.cost_without_caching)
    net = f"net saved {_money(saved)} ({percent} %) after {_money(stats.storage_cost)} of storage"
    return (
        f"{stats.model}: cache {pinned.name}, {pinned.tokens} tokens, expiry {expiry}; {net}\n"
        f"Deleted after the last question; the storage above is its whole {_hours(pinned.ttl_seconds)} TTL, "
        "booked at creation."
    )


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _call_json(seq: int, c: LabelledCall) -> dict[str, Any]:
    usage, cost = c.usage, c.record.cost
    return {
        "seq": seq,
        "part": c.part,
        "call": c.call,
        "model": c.record.model,
        "provider": c.record.provider,
        "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_storage_token_hours": round(usage.cache_storage_token_hours, 3),
        "output_tokens": usage.output_tokens,
        "hit_rate": round(usage.hit_rate, 6),
        "cost_usd": _number(cost.total if cost else None),
        "storage_usd": _number(cost.storage if cost else None),
        "cost_without_caching_usd": _number(cost.without_caching if cost else None),
        "saved_usd": _number(cost.saved if cost else None),
    }


def _pinned_json(pinned: PinnedCache | None) -> dict[str, Any] | None:
    if pinned is None:
        return None
    return {
        "name": pinned.name,
        "tokens": pinned.tokens,
        "expire_time": pinned.expire_time.isoformat(),
        "ttl_seconds": pinned.ttl_seconds,
        "deleted": True,  # run_pinned always deletes it; a failed delete fails the run
    }


def calls_document(scenario: Scenario, *, modes: Mapping[str, str], models: Mapping[str, str]) -> dict[str, Any]:
    """The ``calls.json`` payload: run metadata plus one object per call (costs ``null`` when unpriced).

    ``modes`` and ``models`` map each provider of `PARTS` (``glm``, ``gemini``) to its mode
    (``provider`` or ``emulator``) and model; the top-level ``mode`` and ``model`` are GLM's.
    """
    return {
        "mode": modes["glm"],
        "model": models["glm"],
        "backends": {p: {"mode": modes[p], "model": models[p]} for p in ("glm", "gemini")},
        "parts": [{"key": p.key, "title": p.title, "backend": p.provider, "model": models[p.provider]} for p in PARTS],
        "pinned_cache": _pinned_json(scenario.pinned),
        "calls": [_call_json(seq, c) for seq, c in enumerate(scenario.calls, 1)],
    }
