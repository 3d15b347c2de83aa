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
    assert u is not None and u.cache_read_tokens == 0 and u.input_tokens == 10
    assert usage_from_openai(None) is None  # no usage at all is unknown, never zeros


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
    assert (cost.input, cost.cache_read, cost.output, cost.storage) == (
        Decimal("0.4"),
        Decimal("0.12"),
        Decimal("0.4"),
        Decimal(0),
    )
    assert cost.without_caching == Decimal("1.4")
    assert cost.saved == Decimal("1.4") - Decimal("0.92")


def test_storage_is_priced_and_saved_is_net_of_it() -> None:
    prices = ModelPrices.of(input="0.30", output="2.50", cache_read="0.03", cache_storage_per_hour="1.00")
    book = PriceBook({"gemini-2.5-flash": prices}, use_genai_prices=False)
    # a 100k-token cache kept one hour, read once: storage 0.10, read 0.003 instead of 0.03
    usage = Usage(input_tokens=100_000, cache_read_tokens=100_000, cache_storage_token_hours=100_000.0)
    cost = book.cost(usage, "gemini-2.5-flash")
    assert cost is not None and cost.storage == Decimal("0.1") and cost.cache_read == Decimal("0.003")
    assert cost.saved == Decimal("0.03") - Decimal("0.103")  # one read does not pay for an hour of storage


def test_storage_at_an_unknown_price_makes_the_call_unpriced() -> None:
    book = PriceBook({"m": PRICES}, use_genai_prices=False)
    assert book.cost(Usage(input_tokens=10, cache_storage_token_hours=5.0), "m") is None
    assert book.cost(Usage(input_tokens=10), "m") is not None


def test_gemini_storage_table_and_genai_prices() -> None:
    book = PriceBook()
    assert book.storage_price("gemini-2.5-pro", ("google",)) == Decimal("4.50")
    assert book.storage_price("gemini-2.5-flash-lite", ("google",)) == Decimal("1.00")
    unit = book.unit_prices("gemini-2.5-flash", ("google",))
    assert unit is not None and unit[1] < unit[0]


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
    single = PriceBook({"m": PRICES}, use_genai_prices=False).cost(one, "m")
    assert single is not None
    assert stats.cost == single.total * 4000
    assert stats.saved == single.saved * 4000


def test_cache_creation_tokens_are_not_in_the_no_cache_baseline() -> None:
    prices = ModelPrices.of(input="1.00", output="0", cache_read="0.10")
    book = PriceBook({"m": prices}, use_genai_prices=False)
    # a 1M-token prompt whose 900k-token prefix this call wrote to a new cache and then read
    usage = Usage(
        input_tokens=1_900_000, cache_read_tokens=900_000, cache_write_tokens=900_000, baseline_input_tokens=1_000_000
    )
    cost = book.cost(usage, "m")
    assert cost is not None and cost.without_caching == Decimal("1.0")
    assert cost.input == Decimal("1.0") and cost.cache_read == Decimal("0.09")  # 100k + 900k written, 900k read
    assert (usage + Usage(input_tokens=10)).input_without_caching == 1_000_010


def test_flat_genai_prices_are_priced_exactly_as_genai_prices_does() -> None:
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    usage = Usage(input_tokens=120_000, cache_read_tokens=90_000, output_tokens=3_000)
    for model, provider in (("glm-4.7", "zhipuai"), ("gemini-2.5-flash", "google"), ("gemini-2.5-pro", "google")):
        cost = PriceBook().cost(usage, model, (provider,))
        expected = calc_price(
            GUsage(input_tokens=120_000, cache_read_tokens=90_000, output_tokens=3_000), model, provider_id=provider
        )
        assert cost is not None and cost.total == expected.total_price, model
