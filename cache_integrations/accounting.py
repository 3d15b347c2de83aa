"""Aggregation of cache usage and money across calls, shared by the LangChain and LlamaIndex handlers.

A `CacheLedger` is what a callback handler feeds: one `record()` per finished model call. It is
thread-safe (handlers are called from batch worker threads and event loops at once) and keeps
per-model totals plus a bounded list of recent calls for per-call reports.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ._deferred import defer, settle
from .pricing import Cost, PriceBook, default_price_book
from .usage import Usage

__all__ = ["CacheLedger", "CacheStats", "CallRecord", "provider_price_ids"]

# Which genai-prices provider ids to try for a provider name a model reports.
_PRICE_IDS: dict[str, tuple[str, ...]] = {
    "zhipuai": ("zhipuai", "zai"),
    "zai": ("zai", "zhipuai"),
    "google": ("google",),
    "google_genai": ("google",),
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "deepseek": ("deepseek",),
}


def provider_price_ids(provider: str | None) -> tuple[str, ...]:
    if not provider:
        return ()
    return _PRICE_IDS.get(provider, (provider,))


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished model call as a handler saw it."""

    model: str
    provider: str | None
    usage: Usage | None
    """None when the provider reported no valid usage: the call is counted, its tokens are unknown."""
    cost: Cost | None
    diagnosis: Any = None
    """The call's `cache_integrations.diagnostics.Diagnosis`, when diagnostics are on."""
    run_id: str | None = None
    """The framework's id of the call (LangChain run id, LlamaIndex span or event id), to match
    records to requests when calls finish out of order (batch, async)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Totals for one model (or for all models, with ``model="*"``).

    Costs are ``None`` when no call of the model could be priced; `unpriced_calls` counts the calls
    left out of the money columns, so a partial total is never mistaken for a complete one. `cost`
    includes `storage_cost` (explicit-cache storage), so `saved` is net of storage.
    `unknown_usage_calls` counts the calls whose provider reported no valid usage: they are in
    `calls` but in no token or money column (never booked as zero).
    """

    model: str
    calls: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_storage_token_hours: float = 0.0
    cost: Decimal | None = None
    cost_without_caching: Decimal | None = None
    storage_cost: Decimal | None = None
    unpriced_calls: int = 0
    unknown_usage_calls: int = 0

    @property
    def hit_rate(self) -> float:
        """Cached share of input tokens."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0

    @property
    def saved(self) -> Decimal | None:
        if self.cost is None or self.cost_without_caching is None:
            return None
        return self.cost_without_caching - self.cost

    def add(self, usage: Usage | None, cost: Cost | None) -> CacheStats:
        if usage is None:
            return replace(self, calls=self.calls + 1, unknown_usage_calls=self.unknown_usage_calls + 1)
        total = cost.total if cost is not None else None
        without = cost.without_caching if cost is not None else None
        storage = cost.storage if cost is not None else None
        return CacheStats(
            model=self.model,
            calls=self.calls + 1,
            input_tokens=self.input_tokens + usage.input_tokens,
            cache_read_tokens=self.cache_read_tokens + usage.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + usage.cache_write_tokens,
            output_tokens=self.output_tokens + usage.output_tokens,
            reasoning_tokens=self.reasoning_tokens + usage.reasoning_tokens,
            cache_storage_token_hours=self.cache_storage_token_hours + usage.cache_storage_token_hours,
            cost=_sum(self.cost, total),
            cost_without_caching=_sum(self.cost_without_caching, without),
            storage_cost=_sum(self.storage_cost, storage),
            unpriced_calls=self.unpriced_calls + (0 if cost is not None else 1),
        )

    def merge(self, other: CacheStats, model: str) -> CacheStats:
        return CacheStats(
            model=model,
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_storage_token_hours=self.cache_storage_token_hours + other.cache_storage_token_hours,
            cost=_sum(self.cost, other.cost),
            cost_without_caching=_sum(self.cost_without_caching, other.cost_without_caching),
            storage_cost=_sum(self.storage_cost, other.storage_cost),
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            unknown_usage_calls=self.unknown_usage_calls + other.unknown_usage_calls,
        )


def _sum(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass
class CacheLedger:
    """Thread-safe running totals per model, plus the most recent `keep_calls` calls."""

    prices: PriceBook = field(default_factory=default_price_book)
    keep_calls: int = 10_000
    _by_model: dict[str, CacheStats] = field(default_factory=dict, init=False, repr=False)
    _calls: deque[CallRecord] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._calls = deque(maxlen=self.keep_calls)

    def record(
        self,
        usage: Usage | None,
        *,
        model: str,
        provider: str | None = None,
        diagnosis: Any = None,
        run_id: str | None = None,
        diagnose: Callable[[], Any] | None = None,
    ) -> CallRecord:
        """Price and add one call (`usage` None: reported no valid usage, counted with no tokens).
        Pricing happens outside the lock; the update is atomic.

        `diagnose`, when given, computes the call's diagnosis after the call, off the caller's thread
        (`cache_integrations._deferred`); the record in `calls` carries it once it is done (reading `calls`
        waits for it). The record returned is the one booked now, without it."""
        cost = None if usage is None else self.prices.cost(usage, model, provider_price_ids(provider))
        rec = CallRecord(model, provider, usage, cost, diagnosis, run_id)
        with self._lock:
            current = self._by_model.get(model) or CacheStats(model=model)
            self._by_model[model] = current.add(usage, cost)
            self._calls.append(rec)
        if diagnose is not None:
            defer(lambda: self._attach(rec, diagnose()))
        return rec

    def _attach(self, rec: CallRecord, diagnosis: Any) -> None:
        """`rec`, still among the kept calls, now carries `diagnosis` (searched from the newest: it is
        usually among the last few)."""
        if diagnosis is None:
            return
        with self._lock:
            calls = self._calls
            for i in range(len(calls) - 1, -1, -1):
                if calls[i] is rec:
                    calls[i] = replace(rec, diagnosis=diagnosis)
                    return

    @property
    def by_model(self) -> dict[str, CacheStats]:
        with self._lock:
            return dict(self._by_model)

    @property
    def calls(self) -> list[CallRecord]:
        """The most recent calls, oldest first, with their diagnoses (waits for diagnoses still running)."""
        settle()
        with self._lock:
            return list(self._calls)

    @property
    def total(self) -> CacheStats:
        out = CacheStats(model="*")
        for stats in self.by_model.values():
            out = out.merge(stats, "*")
        return out

    def reset(self) -> None:
        with self._lock:
            self._by_model.clear()
            self._calls.clear()

    def report(self) -> str:
        """A plain-text table, one row per model and a total row."""
        rows = list(self.by_model.values())
        if len(rows) != 1:
            rows.append(self.total)
        return format_stats_table(rows)


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def format_stats_table(rows: Sequence[CacheStats]) -> str:
    header = ("model", "calls", "input", "cached", "hit %", "output", "cost", "no-cache cost", "saved")
    body = [
        (
            s.model,
            str(s.calls),
            str(s.input_tokens),
            str(s.cache_read_tokens),
            f"{100 * s.hit_rate:.1f}",
            str(s.output_tokens),
            _money(s.cost),
            _money(s.cost_without_caching),
            _money(s.saved),
        )
        for s in rows
    ]
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in (header, *body)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"({s.model}: {s.unpriced_calls} call(s) had no known price)"
        for s in rows
        if s.unpriced_calls and s.model != "*"
    ]
    notes += [
        f"({s.model}: {s.unknown_usage_calls} call(s) reported no usage: tokens and cost unknown, not counted)"
        for s in rows
        if s.unknown_usage_calls and s.model != "*"
    ]
    return "\n".join(lines + notes)
