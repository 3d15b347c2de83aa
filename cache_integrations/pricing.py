"""Cost with and without caching, itemized.

Token prices come from genai-prices (maintained, dated, tier-aware), looked up by provider and model.
genai-prices has no price for explicit-cache storage, so Gemini's storage prices (USD per million
tokens per hour) live in a small table here, from Google's pricing page. Users override or add models
with `ModelPrices`, which wins over both. A model nobody prices yields ``None``: we never invent a price.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from .usage import Usage

__all__ = ["STORAGE_PER_MTOK_HOUR", "Cost", "ModelPrices", "PriceBook", "default_price_book"]

logger = logging.getLogger(__name__)

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)

STORAGE_PER_MTOK_HOUR: dict[str, Decimal] = {
    # ai.google.dev/gemini-api/docs/pricing, "Context caching ... storage price" (2025-2026 revisions).
    "gemini-2.5-pro": Decimal("4.50"),
    "gemini-2.5-flash": Decimal("1.00"),
    "gemini-2.5-flash-lite": Decimal("1.00"),
    "gemini-2.0-flash": Decimal("1.00"),
}
"""Explicit-cache storage, USD per million tokens per hour, by model (prefix match on versions)."""


@dataclass(frozen=True, slots=True)
class Cost:
    """USD, itemized. `input` covers uncached input and cache writes; `cache_read` the cached input.

    `without_caching` prices the same call with every input token at the full rate and no storage,
    so `saved` is net of cache writes and storage.
    """

    input: Decimal
    cache_read: Decimal
    output: Decimal
    storage: Decimal
    without_caching: Decimal

    @property
    def total(self) -> Decimal:
        return self.input + self.cache_read + self.output + self.storage

    @property
    def saved(self) -> Decimal:
        """Money caching saved on this call, net of cache writes and storage (may be negative)."""
        return self.without_caching - self.total

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.input + other.input,
            self.cache_read + other.cache_read,
            self.output + other.output,
            self.storage + other.storage,
            self.without_caching + other.without_caching,
        )


class _Priced(Protocol):
    def tokens_cost(self, usage: Usage) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(input incl. writes, cache_read, output, without_caching), storage excluded."""
        ...


def _d(value: Decimal | float | int | str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """User-supplied prices in USD per million tokens (storage: per million tokens per hour).

    `cache_read` / `cache_write` default to the input price (no discount, no surcharge).
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_storage_per_hour: Decimal | None = None

    @classmethod
    def of(
        cls,
        *,
        input: Decimal | float | str,
        output: Decimal | float | str,
        cache_read: Decimal | float | str | None = None,
        cache_write: Decimal | float | str | None = None,
        cache_storage_per_hour: Decimal | float | str | None = None,
    ) -> ModelPrices:
        """Build from floats or strings (converted exactly through `str`)."""
        return cls(
            Decimal(str(input)),
            Decimal(str(output)),
            _d(cache_read),
            _d(cache_write),
            _d(cache_storage_per_hour),
        )

    def tokens_cost(self, usage: Usage) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        input_cost = (usage.uncached_input_tokens * self.input + usage.cache_write_tokens * write) / _MTOK
        read_cost = usage.cache_read_tokens * read / _MTOK
        output_cost = usage.output_tokens * self.output / _MTOK
        without = (usage.input_without_caching * self.input) / _MTOK + output_cost
        return input_cost, read_cost, output_cost, without


class _GenaiPrice:
    """A genai-prices model price; handles tiers and dated prices the way the provider bills."""

    __slots__ = ("_price",)

    def __init__(self, price: Any) -> None:
        self._price = price

    def tokens_cost(self, usage: Usage) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        from genai_prices import Usage as GUsage

        calc = self._price.calc_price
        with_cache = calc(
            GUsage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
            )
        )
        without = calc(GUsage(input_tokens=usage.input_without_caching, output_tokens=usage.output_tokens))
        read_cost = _ZERO
        if usage.cache_read_tokens:
            read_cost = calc(GUsage(input_tokens=usage.cache_read_tokens, cache_read_tokens=usage.cache_read_tokens))[
                "input_price"
            ]
        return (
            with_cache["input_price"] - read_cost,
            read_cost,
            with_cache["output_price"],
            without["total_price"],
        )


def _flat(price: Any) -> ModelPrices | None:
    """A genai-prices price with plain per-token rates as `ModelPrices` (priced with arithmetic on
    every call); tiered or otherwise structured prices keep genai-prices' own calculation."""
    rates = [getattr(price, k, None) for k in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")]
    if not isinstance(rates[0], Decimal) or not isinstance(rates[1], Decimal):
        return None
    if not all(r is None or isinstance(r, Decimal) for r in rates[2:]):
        return None
    return ModelPrices(rates[0], rates[1], rates[2], rates[3])


def _storage_table_price(model: str) -> Decimal | None:
    best: str | None = None
    for prefix in STORAGE_PER_MTOK_HOUR:
        if (model == prefix or model.startswith(prefix + "-")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else STORAGE_PER_MTOK_HOUR[best]


@dataclass(frozen=True, slots=True)
class _Resolved:
    tokens: _Priced
    storage_per_hour: Decimal | None


class PriceBook:
    """Resolves (provider, model) to prices: overrides first, then genai-prices.

    `overrides` maps a model name, or ``"provider:model"``, to `ModelPrices`. Lookups are memoized,
    so pricing a call costs a dictionary hit after the first call for a model.
    """

    def __init__(self, overrides: Mapping[str, ModelPrices] | None = None, *, use_genai_prices: bool = True):
        self._overrides = dict(overrides or {})
        self._use_genai_prices = use_genai_prices
        self._memo: dict[tuple[str, tuple[str, ...]], _Resolved | None] = {}
        self._lock = threading.Lock()

    def set_price(self, model: str, prices: ModelPrices, *, provider: str | None = None) -> None:
        key = f"{provider}:{model}" if provider else model
        with self._lock:
            self._overrides[key] = prices
            self._memo.clear()

    def cost(self, usage: Usage, model: str, providers: Sequence[str] = ()) -> Cost | None:
        """Cost of `usage` on `model`; `providers` are genai-prices provider ids to try in order.

        None when the tokens cannot be priced, or when the call booked storage at an unknown price.
        """
        resolved = self._lookup(model, tuple(providers))
        if resolved is None:
            return None
        storage = _ZERO
        if usage.cache_storage_token_hours:
            if resolved.storage_per_hour is None:
                return None
            storage = Decimal(str(usage.cache_storage_token_hours)) * resolved.storage_per_hour / _MTOK
        input_cost, read_cost, output_cost, without = resolved.tokens.tokens_cost(usage)
        return Cost(input_cost, read_cost, output_cost, storage, without)

    def storage_price(self, model: str, providers: Sequence[str] = ()) -> Decimal | None:
        """USD per million tokens per hour of explicit-cache storage, if known."""
        resolved = self._lookup(model, tuple(providers))
        return None if resolved is None else resolved.storage_per_hour

    def unit_prices(self, model: str, providers: Sequence[str] = ()) -> tuple[Decimal, Decimal] | None:
        """(input, cached input) USD per million tokens at the first tier, if known."""
        resolved = self._lookup(model, tuple(providers))
        if resolved is None:
            return None
        full, _, _, _ = resolved.tokens.tokens_cost(Usage(input_tokens=1_000_000))
        _, cached, _, _ = resolved.tokens.tokens_cost(Usage(input_tokens=1_000_000, cache_read_tokens=1_000_000))
        return full, cached

    def knows(self, model: str, providers: Sequence[str] = ()) -> bool:
        return self._lookup(model, tuple(providers)) is not None

    def _lookup(self, model: str, providers: tuple[str, ...]) -> _Resolved | None:
        key = (model, providers)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._resolve(model, providers)
        with self._lock:
            self._memo[key] = found
        return found

    def _resolve(self, model: str, providers: tuple[str, ...]) -> _Resolved | None:
        bare = model.removeprefix("models/")
        override = next(
            (self._overrides[k] for k in (*(f"{p}:{bare}" for p in providers), bare) if k in self._overrides), None
        )
        if override is not None:
            storage = override.cache_storage_per_hour
            return _Resolved(override, storage if storage is not None else _storage_table_price(bare))
        if not self._use_genai_prices:
            return None
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
        now = datetime.now(UTC)
        for provider_id in providers or (None,):
            try:
                _, info = snapshot.find_provider_model(bare, None, provider_id, None)
            except LookupError:
                continue
            except Exception as exc:  # genai-prices raises its own error types for unknown models
                logger.debug("genai-prices has no price for %s/%s: %s", provider_id, bare, exc)
                continue
            price = info.get_prices(now)
            return _Resolved(_flat(price) or _GenaiPrice(price), _storage_table_price(bare))
        return None


_default: PriceBook | None = None


def default_price_book() -> PriceBook:
    """The process-wide price book handlers use unless given their own."""
    global _default
    if _default is None:
        _default = PriceBook()
    return _default
