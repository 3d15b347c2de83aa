"""Usage mapping, prices with and without caching, and the thread-safe ledger."""

from __future__ import annotations

import threading
from decimal import Decimal

from cache_integrations import CacheLedger, ModelPrices, PriceBook, Usage
from cache_integrations.providers.glm import usage_from_openai


def test_openai_style_usage_mapping() -> None:
    raw = {
        "completion_tokens": 88,
        "completion_tokens_details": {"reasoning_tokens": 62},
        "prompt_tokens": 267,
        "prompt_tokens_details": {"cached_tokens": 173},
        "total_tokens": 355,
    }
    u = usage_from_openai(raw)
    assert u == Usage(input_tokens=267, cache_read_tokens=173, output_tokens=88, reasoning_tokens=62)
    assert u.uncached_input_tokens == 94 and u.total_tokens == 355


def test_missing_prompt_tokens_details_means_zero_cache_read() -> None:
    u = usage_from_openai({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
    assert u.cache_read_tokens == 0 and u.input_tokens == 10
    assert usage_from_openai(None) == Usage()


def test_deepseek_hit_field_wins() -> None:
    raw = {
        "prompt_tokens": 339,
        "completion_tokens": 92,
        "prompt_cache_hit_tokens": 320,
        "prompt_cache_miss_tokens": 19,
    }
    assert usage_from_openai(raw).cache_read_tokens == 320


PRICES = ModelPrices.of(input="1.00", output="4.00", cache_read="0.20")


def test_override_prices_with_and_without_caching() -> None:
    book = PriceBook({"my-model": PRICES}, use_genai_prices=False)
    cost = book.cost(Usage(input_tokens=1_000_000, cache_read_tokens=600_000, output_tokens=100_000), "my-model")
    assert cost is not None
    assert cost.input == Decimal("0.4") + Decimal("0.12")
    assert cost.output == Decimal("0.4")
    assert cost.without_caching == Decimal("1.4")
    assert cost.saved == Decimal("1.4") - Decimal("0.92")


def test_genai_prices_lookup_discounts_cached_glm_tokens() -> None:
    book = PriceBook()
    usage = Usage(input_tokens=100_000, cache_read_tokens=80_000, output_tokens=1_000)
    cost = book.cost(usage, "glm-4.7", ("zhipuai", "zai"))
    assert cost is not None and cost.total > 0
    assert cost.total < cost.without_caching
    # glm-4.6 is missing from the bigmodel table but priced by Z.ai: the fallback provider is used.
    assert book.cost(usage, "glm-4.6", ("zhipuai", "zai")) is not None


def test_unknown_model_is_unpriced_not_invented() -> None:
    ledger = CacheLedger(PriceBook(use_genai_prices=False))
    ledger.record(Usage(input_tokens=10, cache_read_tokens=5), model="mystery")
    stats = ledger.total
    assert stats.cost is None and stats.saved is None and stats.unpriced_calls == 1
    assert "no known price" in ledger.report()


def test_ledger_is_exact_under_concurrency() -> None:
    ledger = CacheLedger(PriceBook({"m": PRICES}, use_genai_prices=False))
    one = Usage(input_tokens=100, cache_read_tokens=40, output_tokens=7)

    def work() -> None:
        for _ in range(500):
            ledger.record(one, model="m", provider="x")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = ledger.by_model["m"]
    assert (stats.calls, stats.input_tokens, stats.cache_read_tokens, stats.output_tokens) == (
        4000,
        400_000,
        160_000,
        28_000,
    )
    assert stats.hit_rate == 0.4
    single = PRICES.cost(one)
    assert stats.cost == single.total * 4000
    assert stats.saved == single.saved * 4000
