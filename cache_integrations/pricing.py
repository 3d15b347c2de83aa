"""Cost with and without caching.

Prices come from genai-prices (maintained, dated, tier-aware), looked up by provider and model.
Users override or add models with `ModelPrices` (USD per million tokens), which wins over
genai-prices. A model nobody prices yields ``None``: we never invent a price.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Protocol

from .usage import Usage

__all__ = ["Cost", "ModelPrices", "PriceBook", "default_price_book"]

logger = logging.getLogger(__name__)

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Cost:
    """USD. `without_caching` prices the same call with every input token at the full rate."""

    input: Decimal
    output: Decimal
    without_caching: Decimal
    storage: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.storage

    @property
    def saved(self) -> Decimal:
        """Money caching saved on this call, net of cache writes and storage (may be negative)."""
        return self.without_caching - self.total

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.input + other.input,
            self.output + other.output,
            self.without_caching + other.without_caching,
            self.storage + other.storage,
        )


class _Priced(Protocol):
    def cost(self, usage: Usage) -> Cost: ...


def _d(value: Decimal | float | int | str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """User-supplied prices in USD per million tokens.

    `cache_read` / `cache_write` default to the input price (no discount, no surcharge).
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    @classmethod
    def of(
        cls,
        *,
        input: Decimal | float | str,
        output: Decimal | float | str,
        cache_read: Decimal | float | str | None = None,
        cache_write: Decimal | float | str | None = None,
    ) -> ModelPrices:
        """Build from floats or strings (converted exactly through `str`)."""
        return cls(Decimal(str(input)), Decimal(str(output)), _d(cache_read), _d(cache_write))

    def cost(self, usage: Usage) -> Cost:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        input_cost = (
            usage.uncached_input_tokens * self.input + usage.cache_read_tokens * read + usage.cache_write_tokens * write
        ) / _MTOK
        output_cost = usage.output_tokens * self.output / _MTOK
        without = (usage.input_tokens * self.input) / _MTOK + output_cost
        return Cost(input_cost, output_cost, without)


class _GenaiPrice:
    """A genai-prices model price; handles tiers and dated prices the way the provider bills."""

    __slots__ = ("_price",)

    def __init__(self, price: object) -> None:
        self._price = price

    def cost(self, usage: Usage) -> Cost:
        from genai_prices import Usage as GUsage

        with_cache = self._price.calc_price(  # type: ignore[attr-defined]
            GUsage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
            )
        )
        without = self._price.calc_price(  # type: ignore[attr-defined]
            GUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
        )
        return Cost(with_cache["input_price"], with_cache["output_price"], without["total_price"])


class PriceBook:
    """Resolves (provider, model) to prices: overrides first, then genai-prices.

    `overrides` maps a model name, or ``"provider:model"``, to `ModelPrices`. Lookups are memoized,
    so pricing a call costs a dictionary hit after the first call for a model.
    """

    def __init__(self, overrides: Mapping[str, ModelPrices] | None = None, *, use_genai_prices: bool = True):
        self._overrides = dict(overrides or {})
        self._use_genai_prices = use_genai_prices
        self._memo: dict[tuple[str, tuple[str, ...]], _Priced | None] = {}
        self._lock = threading.Lock()

    def set_price(self, model: str, prices: ModelPrices, *, provider: str | None = None) -> None:
        key = f"{provider}:{model}" if provider else model
        with self._lock:
            self._overrides[key] = prices
            self._memo.clear()

    def cost(self, usage: Usage, model: str, providers: Sequence[str] = ()) -> Cost | None:
        """Cost of `usage` on `model`; `providers` are genai-prices provider ids to try in order."""
        priced = self._lookup(model, tuple(providers))
        return None if priced is None else priced.cost(usage)

    def knows(self, model: str, providers: Sequence[str] = ()) -> bool:
        return self._lookup(model, tuple(providers)) is not None

    def _lookup(self, model: str, providers: tuple[str, ...]) -> _Priced | None:
        key = (model, providers)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._resolve(model, providers)
        with self._lock:
            self._memo[key] = found
        return found

    def _resolve(self, model: str, providers: tuple[str, ...]) -> _Priced | None:
        bare = model.removeprefix("models/")
        for p in providers:
            if (hit := self._overrides.get(f"{p}:{bare}")) is not None:
                return hit
        if (hit := self._overrides.get(bare)) is not None:
            return hit
        if not self._use_genai_prices:
            return None
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
        now = datetime.now(timezone.utc)
        for provider_id in providers or (None,):
            try:
                _, info = snapshot.find_provider_model(bare, None, provider_id, None)
            except LookupError:
                continue
            except Exception as exc:  # genai-prices raises its own error types for unknown models
                logger.debug("genai-prices has no price for %s/%s: %s", provider_id, bare, exc)
                continue
            return _GenaiPrice(info.get_prices(now))
        return None


_default: PriceBook | None = None


def default_price_book() -> PriceBook:
    """The process-wide price book handlers use unless given their own."""
    global _default
    if _default is None:
        _default = PriceBook()
    return _default
