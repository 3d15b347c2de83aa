"""`python -m cache_integrations doctor trace.jsonl`: a readable report of a diagnostics trace.

Hit rate over time, every cause of misses with its count, tokens and money lost and the first
example, so a team sees which fix pays most.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .diagnostics import CAUSES
from .progress import read_lines

__all__ = ["Trace", "cause_stats", "doctor_report", "hit_rate_buckets", "load_trace", "read_trace"]

_INT_FIELDS = ("input_tokens", "reported_cached_tokens", "expected_cacheable_tokens", "lost_tokens", "call_index")
_OPTIONAL_INT_FIELDS = ("message_index", "char_offset", "token_offset")
_SKIPPED_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace file's valid records, oldest first, and the lines that were skipped as malformed."""

    records: list[dict[str, Any]]
    skipped: int = 0
    """How many non-blank lines were not a well-formed record (not JSON, not an object, bad field types)."""
    examples: tuple[tuple[int, str], ...] = ()
    """The first few skipped lines: (line number, why)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(record: Any) -> str | None:
    """Why a parsed line is not a record the report can use (None when it is)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for name in _INT_FIELDS:
        if record.get(name) is not None and not _is_int(record[name]):
            return f"{name} is {record[name]!r}, not an integer"
    for name in _OPTIONAL_INT_FIELDS:
        if record.get(name) is not None and not _is_int(record[name]):
            return f"{name} is {record[name]!r}, not an integer"
    for name in ("cause", "conversation", "detail"):
        if record.get(name) is not None and not isinstance(record[name], (str, int)):
            return f"{name} is {type(record[name]).__name__}, not a string"
    lost_usd = record.get("lost_usd")
    if lost_usd is not None:
        try:
            if isinstance(lost_usd, bool) or not Decimal(str(lost_usd)).is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            return f"lost_usd is {lost_usd!r}, not an amount"
    return None


def read_trace(path: str | Path) -> Trace:
    """Read a trace, skipping (and counting) lines that are not well-formed records.

    A trace is appended to by running processes, so a truncated last line, a line from another tool
    or a hand edit must not hide everything else it holds.
    """
    records: list[dict[str, Any]] = []
    skipped = 0
    examples: list[tuple[int, str]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(read_lines(fh, f"Reading {Path(path).name}"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                problem: str | None = f"not valid JSON ({exc.__class__.__name__})"
            else:
                problem = _problem(record)
            if problem is None:
                records.append(record)
                continue
            skipped += 1
            if len(examples) < _SKIPPED_EXAMPLES:
                examples.append((n, problem))
    return Trace(records, skipped, tuple(examples))


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    """The trace's well-formed records, oldest first (see `read_trace` for what was skipped)."""
    return read_trace(path).records


def _skipped_note(trace: Trace) -> list[str]:
    if not trace.skipped:
        return []
    shown = "; ".join(f"line {n}: {why}" for n, why in trace.examples)
    more = ", ..." if trace.skipped > len(trace.examples) else ""
    return [f"Skipped {trace.skipped} malformed line(s) of the trace ({shown}{more}).", ""]


@dataclass
class _CauseStats:
    calls: int = 0
    lost_tokens: int = 0
    lost_usd: Decimal = Decimal(0)
    unpriced: int = 0
    example: dict[str, Any] = field(default_factory=dict)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in (header, *rows)
    ]
    return [fmt[0], "  ".join("-" * w for w in widths if w).rstrip(), *fmt[1:]]


def hit_rate_buckets(records: list[dict[str, Any]], buckets: int = 8) -> list[tuple[int, int, int, int]]:
    """(first call, last call, input tokens, cached tokens) of `buckets` consecutive runs of calls."""
    size = max(1, -(-len(records) // max(buckets, 1)))
    out = []
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        i_tokens = sum(int(r.get("input_tokens") or 0) for r in chunk)
        c_tokens = sum(int(r.get("reported_cached_tokens") or 0) for r in chunk)
        out.append((start + 1, start + len(chunk), i_tokens, c_tokens))
    return out


def cause_stats(records: list[dict[str, Any]]) -> list[tuple[str, _CauseStats]]:
    """Every cause of misses with its calls, tokens and money lost and first example, most money first."""
    causes: dict[str, _CauseStats] = {}
    for r in records:
        cause = r.get("cause")
        if not cause:
            continue
        stats = causes.setdefault(cause, _CauseStats(example=r))
        stats.calls += 1
        stats.lost_tokens += int(r.get("lost_tokens") or 0)
        if r.get("lost_usd") is None:
            stats.unpriced += 1
        else:
            stats.lost_usd += Decimal(str(r["lost_usd"]))
    return sorted(causes.items(), key=lambda kv: (kv[1].lost_usd, kv[1].lost_tokens), reverse=True)


def doctor_report(records: list[dict[str, Any]] | Trace, buckets: int = 8) -> str:
    """The report of a trace's records (a `Trace` also reports the lines it skipped)."""
    trace = records if isinstance(records, Trace) else Trace(list(records))
    records = trace.records
    note = _skipped_note(trace)
    if not records:
        return "\n".join([*note, "The trace is empty: no calls were recorded."])
    conversations = {r.get("conversation") for r in records}
    inputs = sum(int(r.get("input_tokens") or 0) for r in records)
    cached = sum(int(r.get("reported_cached_tokens") or 0) for r in records)
    expected = sum(int(r.get("expected_cacheable_tokens") or 0) for r in records)
    lines = [
        *note,
        f"{len(records)} calls in {len(conversations)} conversation(s); {inputs} input tokens, {cached} served "
        f"from cache ({_pct(cached, inputs)} %).",
        f"Whole messages each call shared with the previous one of its conversation: {expected} tokens; "
        f"the provider served {_pct(min(cached, expected), expected)} % of those.",
        "",
        "Hit rate over time",
    ]
    rows = []
    for first, last, i_tokens, c_tokens in hit_rate_buckets(records, buckets):
        bar = "#" * round(20 * c_tokens / i_tokens) if i_tokens else ""
        rows.append((f"calls {first}-{last}", str(i_tokens), str(c_tokens), _pct(c_tokens, i_tokens), bar))
    lines += _table(("calls", "input", "cached", "hit %", ""), rows)

    ranked = cause_stats(records)
    lines.append("")
    if not ranked:
        lines.append("No cache misses with a cause: every prefix was stable.")
        return "\n".join(lines)
    lines.append("Causes of misses (most money lost first)")
    lines += _table(
        ("cause", "calls", "tokens lost", "money lost"),
        (
            (name, str(s.calls), str(s.lost_tokens), f"${s.lost_usd:.6f}" + (" (+unpriced)" if s.unpriced else ""))
            for name, s in ranked
        ),
    )
    for name, s in ranked:
        what, fix = CAUSES.get(name, (name, ""))
        ex = s.example
        where = f", messages[{ex['message_index']}]" if ex.get("message_index") is not None else ""
        offset = f", character {ex['char_offset']}" if ex.get("char_offset") is not None else ""
        lines += [
            "",
            f"{name}: {what}.",
            f"  first seen: conversation {ex.get('conversation')}, call {ex.get('call_index')}{where}{offset}: "
            f"{ex.get('detail')}",
            f"  fix: {fix}",
        ]
    return "\n".join(lines)
