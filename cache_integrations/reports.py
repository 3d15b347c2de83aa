"""A handler's calls as data and pictures: ``to_records()``, ``to_json()``, ``to_dataframe()``, ``plot()``.

The LangChain handler and both LlamaIndex handlers mix in `CallReports`; the functions below work on any
list of `CallRecord` (a `CacheLedger`'s ``calls``). One record per call, oldest first, flat and JSON-safe:

``call`` (1-based), ``run_id``, ``model``, ``provider``, ``input_tokens`` (cached included),
``cached_tokens``, ``cache_write_tokens``, ``uncached_input_tokens``, ``output_tokens``,
``reasoning_tokens``, ``hit_rate``, ``storage_token_hours``, ``cost_usd`` (storage included),
``cost_without_caching_usd``, ``storage_usd``, ``saved_usd`` (net of writes and storage), and, when
diagnostics explained a miss, ``miss_cause``, ``miss_message_index``, ``miss_lost_tokens``,
``miss_lost_usd``. Money is USD as float (``None`` for a model nobody prices); the exact `Decimal` values
stay in ``handler.calls``. A handler keeps its most recent 10,000 calls for these reports (its totals
cover every call).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._deferred import settle
from .accounting import CallRecord
from .usage import Usage

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas import DataFrame

__all__ = ["COLUMNS", "CallReports", "call_records", "records_dataframe"]

COLUMNS = (
    "call",
    "run_id",
    "model",
    "provider",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "uncached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "hit_rate",
    "storage_token_hours",
    "cost_usd",
    "cost_without_caching_usd",
    "storage_usd",
    "saved_usd",
    "miss_cause",
    "miss_message_index",
    "miss_lost_tokens",
    "miss_lost_usd",
    "usage_unknown",
)


def _usd(value: Any) -> float | None:
    return None if value is None else float(value)


def _tokens(u: Usage | None) -> dict[str, Any]:
    """The token columns; all None when the provider reported no valid usage (never zeros)."""
    if u is None:
        return dict.fromkeys(_TOKEN_COLUMNS)
    return {
        "input_tokens": u.input_tokens,
        "cached_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "uncached_input_tokens": u.uncached_input_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "hit_rate": u.hit_rate,
        "storage_token_hours": u.cache_storage_token_hours,
    }


_TOKEN_COLUMNS = COLUMNS[4:12]


def _record(n: int, call: CallRecord) -> dict[str, Any]:
    cost = call.cost
    d = call.diagnosis
    cause = getattr(d, "cause", None)
    return {
        "call": n,
        "run_id": call.run_id,
        "model": call.model,
        "provider": call.provider,
        **_tokens(call.usage),
        "cost_usd": _usd(cost.total) if cost else None,
        "cost_without_caching_usd": _usd(cost.without_caching) if cost else None,
        "storage_usd": _usd(cost.storage) if cost else None,
        "saved_usd": _usd(cost.saved) if cost else None,
        "miss_cause": cause,
        "miss_message_index": getattr(d, "message_index", None) if cause else None,
        "miss_lost_tokens": getattr(d, "lost_tokens", None) if cause else None,
        "miss_lost_usd": _usd(getattr(d, "lost_usd", None)) if cause else None,
        "usage_unknown": call.usage is None,
    }


def call_records(calls: Sequence[CallRecord]) -> list[dict[str, Any]]:
    """One flat dict per call (the module's columns), oldest first."""
    return [_record(n, c) for n, c in enumerate(calls, 1)]


def records_dataframe(records: Sequence[dict[str, Any]]) -> DataFrame:
    """The records as a pandas DataFrame with the module's columns (also when there are none)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError('to_dataframe() needs pandas: pip install "cache-integrations[pandas]"') from exc
    return pd.DataFrame.from_records(list(records), columns=list(COLUMNS))


class CallReports:
    """``to_records()``, ``to_json()``, ``to_dataframe()``, ``plot()`` and ``flush()`` for a handler with a
    ``ledger``."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the miss diagnoses of the calls made so far are done and written to the trace (they run
        after each call, off the caller's thread); False if `timeout` seconds passed first. Reading
        ``diagnoses``, ``calls`` or a report waits by itself, and so does leaving a ``get_cache_usage_*``
        block."""
        return settle(timeout)

    def _report_calls(self) -> list[CallRecord]:
        calls: list[CallRecord] = cast(Any, self).ledger.calls
        return calls

    def to_records(self) -> list[dict[str, Any]]:
        """One flat, JSON-safe dict per call, oldest first (see `cache_integrations.reports`)."""
        return call_records(self._report_calls())

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """The records as a JSON array; also written to `path` when given."""
        text = json.dumps(self.to_records(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def to_dataframe(self) -> DataFrame:
        """The records as a pandas DataFrame (the ``pandas`` extra); its sums equal ``report()``'s totals."""
        return records_dataframe(self.to_records())

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Figure:
        """Cumulative cost with and without caching, and cached / uncached / written prompt tokens per call,
        cache creations marked (the ``plot`` extra). Returns the matplotlib `Figure`; saves it to `path`
        when given. No pyplot: show it in a notebook by leaving it as a cell's value."""
        from .plots import plot_calls

        calls = self._report_calls()
        total = sum(c.usage.input_tokens for c in calls if c.usage is not None)
        cached = sum(c.usage.cache_read_tokens for c in calls if c.usage is not None)
        models = sorted({c.model for c in calls})
        subtitle = (
            f"{', '.join(models)}: {len(calls)} calls, "
            f"{100 * cached / total if total else 0:.1f} % of prompt tokens cached"
        )
        return plot_calls(calls, path, title=title, subtitle=subtitle)
