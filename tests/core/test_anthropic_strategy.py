"""The Anthropic breakpoint strategy: budget, minimum, lookback, TTL by reuse (pure planning, no network)."""

from __future__ import annotations

import pytest

from cache_integrations.messages import ChatRequest, Message, ToolCall, ToolDefinition
from cache_integrations.strategies import (
    AnthropicBreakpointStrategy,
    Breakpoint,
    CallContext,
    StrategyBook,
    anthropic_min_tokens,
    fit_caller_ttls,
    message_chars,
)
from cache_integrations.usage import Usage

SONNET = "claude-sonnet-4-5"
CTX = CallContext(provider="anthropic", model=SONNET)
LONG = "Follow the style guide to the letter. " * 300  # ~11,000 chars: ~2,800 tokens at 4 chars per token
TOOLS = (ToolDefinition("lookup", "Look a thing up.", {"type": "object", "properties": {"q": {"type": "string"}}}),)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(*messages: Message, tools: tuple[ToolDefinition, ...] = TOOLS) -> ChatRequest:
    return ChatRequest(SONNET, messages, tools)


def _conversation(turns: int) -> list[Message]:
    out = [Message("system", LONG)]
    for i in range(turns):
        out += [Message("user", f"question {i}"), Message("assistant", f"answer {i}")]
    return out


def test_minimums_follow_the_documented_table() -> None:
    assert anthropic_min_tokens("claude-sonnet-4-5-20250929") == 1024
    assert anthropic_min_tokens("claude-haiku-4-5") == 4096
    assert anthropic_min_tokens("claude-3-5-haiku-latest") == 2048
    assert anthropic_min_tokens("claude-opus-4-6") == 4096
    assert anthropic_min_tokens("claude-opus-4-1") == 1024
    assert anthropic_min_tokens("some-future-model") == 1024


def test_marks_the_system_prompt_and_the_request_end() -> None:
    plan = AnthropicBreakpointStrategy().plan(_request(*_conversation(2), Message("user", "q")), CTX)
    assert plan.breakpoints == (Breakpoint("system", 0, "5m"), Breakpoint("message", 5, "5m"))


def test_never_marks_below_the_minimum() -> None:
    short = _request(Message("system", "Be brief."), Message("user", "hi"), tools=())
    plan = AnthropicBreakpointStrategy().plan(short, CTX)
    assert plan.breakpoints == ()
    assert any("below the 1024-token minimum" in n for n in plan.notes)
    # A model with a higher minimum skips what Sonnet would mark.
    haiku = CallContext(provider="anthropic", model="claude-haiku-4-5")
    medium = _request(Message("system", "Rules. " * 1200), Message("user", "q"), tools=())  # ~2,100 tokens
    assert AnthropicBreakpointStrategy().plan(medium, CTX).breakpoints
    assert AnthropicBreakpointStrategy().plan(medium, haiku).breakpoints == ()


def test_respects_markers_the_caller_placed_and_never_exceeds_four() -> None:
    marked = [Message("system", LONG, cache_point=True)] + [
        Message("user", f"{LONG} part {i}", cache_point=True) for i in range(3)
    ]
    plan = AnthropicBreakpointStrategy().plan(_request(*marked, Message("user", "new question")), CTX)
    assert len(plan.breakpoints) == 0  # four markers already: no budget left
    two = [Message("system", LONG, cache_point=True), Message("user", "a", cache_point=True), Message("user", "b")]
    plan = AnthropicBreakpointStrategy().plan(_request(*two), CTX)
    assert len(plan.breakpoints) <= 2
    assert Breakpoint("system", 0, "5m") not in plan.breakpoints  # already marked by the caller


def test_a_turn_past_the_lookback_also_marks_the_previous_end() -> None:
    strategy = AnthropicBreakpointStrategy()
    first = _request(*_conversation(1), Message("user", "Check these 12 parcels"))
    plan = strategy.plan(first, CTX)
    strategy.observe(first, CTX, plan, Usage(input_tokens=3000, cache_write_tokens=2900))
    # The next turn: 12 parallel tool calls and their 12 results, 24+ blocks after the previous end.
    calls = tuple(ToolCall(f"c{i}", "lookup", {"q": str(i)}) for i in range(12))
    turn = [Message("assistant", "", tool_calls=calls)] + [
        Message("tool", f"result {i}", tool_call_id=f"c{i}") for i in range(12)
    ]
    second = _request(*first.messages, *turn)
    plan = strategy.plan(second, CTX)
    previous_end = len(first.messages) - 1
    assert Breakpoint("message", previous_end, "5m") in plan.breakpoints
    assert Breakpoint("message", len(second.messages) - 1, "5m") in plan.breakpoints
    # A small turn stays within the lookback: no extra breakpoint.
    strategy.observe(second, CTX, plan, Usage(input_tokens=3500, cache_read_tokens=2900))
    third = _request(*second.messages, Message("assistant", "done"), Message("user", "thanks"))
    indices = [bp.index for bp in strategy.plan(third, CTX).breakpoints]
    assert indices == [0, len(third.messages) - 1]


def test_ttl_follows_the_reuse_gap_and_one_hour_never_follows_five_minutes() -> None:
    clock = Clock()
    strategy = AnthropicBreakpointStrategy(clock=clock)
    request = _request(*_conversation(1), Message("user", "q"))
    plan = strategy.plan(request, CTX)
    assert {bp.ttl for bp in plan.breakpoints} == {"5m"}
    strategy.observe(request, CTX, plan, Usage(input_tokens=3000, cache_write_tokens=2900))
    clock.now += 20 * 60  # the same prefix 20 minutes later: a 5-minute entry would be gone
    plan = strategy.plan(request, CTX)
    assert {bp.ttl for bp in plan.breakpoints} == {"1h"}
    strategy.observe(request, CTX, plan, Usage(input_tokens=3000, cache_write_tokens=2900))
    clock.now += 60  # then every minute: back to 5 minutes for the conversation
    longer = _request(*request.messages, Message("assistant", "a"), Message("user", "q2"))
    plan = strategy.plan(longer, CTX)
    ttls = [bp.ttl for bp in plan.breakpoints]
    assert ttls == sorted(ttls, key=lambda t: t != "1h"), "1h breakpoints must come first"
    clock.now += 2 * 3600  # two hours later: nothing lives that long, 5 minutes again
    strategy2 = AnthropicBreakpointStrategy(clock=clock, ttl="1h")
    assert {bp.ttl for bp in strategy2.plan(request, CTX).breakpoints} == {"1h"}


def test_learns_a_higher_minimum_when_nothing_was_written() -> None:
    book = StrategyBook()  # the strategy with the token estimator the adapters calibrate from usage
    request = _request(Message("system", "Rules. " * 700), Message("user", "q"), tools=())  # ~1,200 est. tokens
    plan = book.plan(request, CTX)
    assert plan is not None and plan.breakpoints
    chars = sum(message_chars(m) for m in request.messages)
    book.observe(request, CTX, plan, Usage(input_tokens=1100), chars)  # placed, but nothing written or read
    strategy = book.strategy("anthropic")
    assert isinstance(strategy, AnthropicBreakpointStrategy)
    assert strategy.min_tokens(SONNET) == 1101
    again = book.plan(request, CTX)
    assert again is not None and again.breakpoints == ()


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="ttl: '2h' is not one of"):
        AnthropicBreakpointStrategy(ttl="2h")  # type: ignore[arg-type]


def test_markers_the_caller_put_on_tools_count_toward_four() -> None:
    marked = [Message("system", LONG)] + [Message("user", f"{LONG} part {i}", cache_point=True) for i in range(2)]
    request = _request(*marked, Message("user", "new question"))
    assert len(AnthropicBreakpointStrategy().plan(request, CTX).breakpoints) == 2  # system and end
    one_tool = CallContext(provider="anthropic", model=SONNET, caller_markers=1)
    plan = AnthropicBreakpointStrategy().plan(request, one_tool)
    assert plan.breakpoints == (Breakpoint("message", 3, "5m"),)  # the end comes first, then the system


def test_a_conversations_new_end_takes_the_gap_since_its_previous_request() -> None:
    clock = Clock()
    strategy = AnthropicBreakpointStrategy(clock=clock)
    first = _request(*_conversation(1), Message("user", "q"))
    strategy.observe(first, CTX, strategy.plan(first, CTX), Usage(input_tokens=3000, cache_write_tokens=2900))
    clock.now += 10 * 60  # a human answers ten minutes later: a 5-minute entry of the new end would be gone
    second = _request(*first.messages, Message("assistant", "a"), Message("user", "q2"))
    plan = strategy.plan(second, CTX)
    assert plan.breakpoints[-1] == Breakpoint("message", len(second.messages) - 1, "1h")
    strategy.observe(second, CTX, plan, Usage(input_tokens=3100, cache_read_tokens=2900))
    clock.now += 30  # then quickly: 5 minutes is enough
    third = _request(*second.messages, Message("assistant", "b"), Message("user", "q3"))
    assert strategy.plan(third, CTX).breakpoints[-1].ttl == "5m"


def test_fit_caller_ttls_keeps_one_hour_before_five_minutes() -> None:
    ours = (Breakpoint("system", 0, "5m"), Breakpoint("message", 5, "1h"))
    # A caller's 1-hour marker on message 3: our system breakpoint before it becomes 1 hour; a caller's 5-minute
    # marker on message 2 turns our later 1-hour breakpoint to 5 minutes.
    assert fit_caller_ttls(ours, {3: "1h"})[0] == Breakpoint("system", 0, "1h")
    assert fit_caller_ttls(ours, {2: "5m"})[1] == Breakpoint("message", 5, "5m")
    assert fit_caller_ttls(ours, {-1: "1h"}) == ours  # a tools marker sits before everything of ours
    assert fit_caller_ttls(ours, {}) == ours
