"""Reading the providers' own cache diagnostics, and merging them into our diagnosis."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.messages import Message
from cache_integrations.pricing import ModelPrices, PriceBook
from cache_integrations.server_diagnostics import ProviderMissReason, ResponseChain, provider_miss_reason
from cache_integrations.usage import Usage

RULES = "Rule: answer from the order record only. " * 120


def test_anthropic_states() -> None:
    assert provider_miss_reason({}) is None  # not asked
    assert provider_miss_reason({"diagnostics": None}) is None  # first turn, or nothing diverged
    assert provider_miss_reason({"diagnostics": {"cache_miss_reason": None}}) is None  # still comparing
    found = provider_miss_reason(
        {"diagnostics": {"cache_miss_reason": {"type": "tools_changed", "cache_missed_input_tokens": 812}}}
    )
    assert found == ProviderMissReason("anthropic", "tools_changed", 812)
    assert found.cause == "tools_changed"
    gone = provider_miss_reason({"diagnostics": {"cache_miss_reason": {"type": "previous_message_not_found"}}})
    assert gone == ProviderMissReason("anthropic", "previous_message_not_found") and gone.cause is None
    causes = {
        r: ProviderMissReason("anthropic", r).cause
        for r in ("model_changed", "system_changed", "messages_changed", "unavailable")
    }
    assert causes == {
        "model_changed": "model_changed",
        "system_changed": "system_prompt_changed",
        "messages_changed": "history_rewritten",
        "unavailable": None,
    }


def test_sdk_objects_are_read_without_dumping_them() -> None:
    reason = SimpleNamespace(type="system_changed", cache_missed_input_tokens=40)
    message = SimpleNamespace(diagnostics=SimpleNamespace(cache_miss_reason=reason), usage=object())
    assert provider_miss_reason(message) == ProviderMissReason("anthropic", "system_changed", 40)
    assert provider_miss_reason(SimpleNamespace(usage=object())) is None


def test_openai_prompt_cache_diagnostics() -> None:
    miss = {"prompt_cache_diagnostics": {"type": "cache_miss", "reason": "tools_changed", "cache_missed_tokens": 2048}}
    assert provider_miss_reason(miss) == ProviderMissReason("openai", "tools_changed", 2048)
    assert provider_miss_reason({"prompt_cache_diagnostics": {"type": "cache_hit"}}) is None
    lost = provider_miss_reason({"prompt_cache_diagnostics": {"type": "comparison_response_not_found"}})
    assert lost == ProviderMissReason("openai", "comparison_response_not_found") and lost.cause is None
    assert ProviderMissReason("openai", "instructions_changed").cause == "system_prompt_changed"
    assert ProviderMissReason("openai", "input_changed").cause == "history_rewritten"


def _observe(diagnostics: CacheDiagnostics, system: str, question: str, cached: int, **kw: Any) -> Any:
    messages = [Message("system", system), Message("user", question)]
    return diagnostics.observe(
        model="claude-sonnet-4-6",
        messages=messages,
        usage=Usage(input_tokens=1500, cache_read_tokens=cached),
        provider="anthropic",
        **kw,
    )


def _diagnostics() -> CacheDiagnostics:
    prices = PriceBook({"claude-sonnet-4-6": ModelPrices.of(input="3", output="15", cache_read="0.3")})
    return CacheDiagnostics(warn=False, prices=prices)


def test_our_precise_cause_is_kept_and_the_providers_word_added() -> None:
    diagnostics = _diagnostics()
    _observe(diagnostics, "Now: 2026-11-22T09:00:00. " + RULES, "q1", 0)
    said = ProviderMissReason("anthropic", "system_changed", 1480)
    d = _observe(diagnostics, "Now: 2026-11-22T09:00:01. " + RULES, "q2", 0, provider_reason=said)
    assert d.cause == "volatile_content" and d.char_offset == len("Now: ")
    assert (d.provider_reason, d.provider_missed_tokens) == ("system_changed", 1480)
    assert d.detail.endswith("Anthropic's cache diagnostics: system_changed, ~1480 tokens")
    assert d.to_json()["provider_reason"] == "system_changed"


def test_a_break_only_the_provider_saw_becomes_the_cause() -> None:
    diagnostics = _diagnostics()
    _observe(diagnostics, RULES, "q1", 0)
    said = ProviderMissReason("anthropic", "messages_changed", 1400)
    d = _observe(diagnostics, RULES, "q1", 0, provider_reason=said)  # same text: our view saw no break
    assert d.cause == "history_rewritten" and d.fix.startswith("append to the history only")
    assert d.lost_tokens > 0 and d.lost_usd is not None and d.lost_usd > Decimal(0)
    unseen = _diagnostics()  # a first call of its conversation, for us: the provider's estimate is the loss
    d = _observe(unseen, RULES, "q1", 100, provider_reason=ProviderMissReason("anthropic", "model_changed", 1400))
    assert (d.cause, d.lost_tokens) == ("model_changed", 1300)


def test_a_reason_that_names_no_break_changes_nothing_but_the_detail() -> None:
    diagnostics = _diagnostics()
    _observe(diagnostics, RULES, "q1", 0)
    d = _observe(diagnostics, RULES, "q2", 1400, provider_reason=ProviderMissReason("anthropic", "unavailable"))
    assert d.cause is None and d.provider_reason == "unavailable" and "unavailable" in d.detail


def _chain_call(chain: ResponseChain, system: str, question: str, session: str | None, rid: str | None) -> str | None:
    messages = [Message("system", system), Message("user", question)]
    before = chain.previous("m", messages, (), session)
    chain.record("m", messages, (), session, rid)
    return before


def test_the_chain_names_the_previous_response_of_the_same_conversation() -> None:
    chain = ResponseChain()
    assert _chain_call(chain, RULES, "q1", None, "msg_1") is None
    # A timestamped system prompt is still the same conversation (volatile values are masked).
    assert _chain_call(chain, "Now: 2026-11-22T09:00:00. " + RULES, "q2", None, "msg_2") is None
    assert _chain_call(chain, "Now: 2026-11-22T09:00:01. " + RULES, "q3", None, "msg_3") == "msg_2"
    assert _chain_call(chain, "Other rules entirely. " * 60, "q", None, "msg_4") is None  # another conversation
    assert _chain_call(chain, RULES, "q1", "thread-a", "msg_a1") is None  # sessions never mix with lineage
    assert _chain_call(chain, RULES, "q2", "thread-b", "msg_b1") is None
    assert _chain_call(chain, RULES, "q3", "thread-a", None) == "msg_a1"
    assert _chain_call(chain, RULES, "q4", "thread-a", "msg_a3") is None  # after an answer without id: afresh


def test_the_chain_is_bounded() -> None:
    now = [0.0]
    chain = ResponseChain(max_conversations=3, max_age=60.0, clock=lambda: now[0])
    for i in range(10):
        _chain_call(chain, RULES, f"q{i}", f"s{i}", f"msg_{i}")
    assert len(chain) == 3
    now[0] = 61.0
    assert _chain_call(chain, RULES, "again", "s9", "msg_x") is None and len(chain) == 1


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_server_diagnostics_must_be_a_bool(value: Any) -> None:
    from cache_integrations.errors import ConfigurationError
    from cache_integrations.strategies import StrategyBook

    with pytest.raises(ConfigurationError, match="server_diagnostics: expected True or False"):
        StrategyBook(server_diagnostics=value)
