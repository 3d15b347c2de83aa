"""Anthropic Messages API on the emulator, driven by the real ``anthropic`` SDK over loopback HTTP.

The caching rules under test are Anthropic's, from platform.claude.com/docs/en/build-with-claude/
prompt-caching: breakpoints (explicit and top-level automatic), at most 4, 1h before 5m, a lookback of
20 positions, per-model minimum cacheable length, TTL from last use, usage that excludes cached and
written tokens from ``input_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, RunningServer
from cache_integrations.testing._anthropic_cache import min_cacheable_tokens
from cache_integrations.testing.faults import anthropic_overloaded, anthropic_rate_limit, stream_cut

MODEL = "claude-sonnet-4-6"  # 1024-token minimum
EPHEMERAL: dict[str, Any] = {"type": "ephemeral"}


def words(n: int, seed: str = "w") -> str:
    """A text of exactly ``n`` emulator tokens."""
    return " ".join(f"{seed}{i}" for i in range(n))


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def cached_system(text: str, ttl: str | None = None) -> list[dict[str, Any]]:
    control = {**EPHEMERAL, "ttl": ttl} if ttl else EPHEMERAL
    return [{"type": "text", "text": text, "cache_control": control}]


def usage_of(sdk: anthropic.Anthropic, **params: Any) -> Any:
    params.setdefault("model", MODEL)
    params.setdefault("max_tokens", 256)
    return sdk.messages.create(**params).usage


def total_input(usage: Any) -> int:
    return int(usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens)


# -------------------------------------------------------------------------------------- write & read


def test_write_then_read_across_calls(sdk: anthropic.Anthropic, emu: Emulator) -> None:
    system = cached_system(words(1500))
    first = usage_of(sdk, system=system, messages=[{"role": "user", "content": "First question?"}])
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens > 1500
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    # input_tokens is only what follows the breakpoint (the question and the turn marker).
    assert 0 < first.input_tokens < 20
    second = usage_of(sdk, system=system, messages=[{"role": "user", "content": "A different question?"}])
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    # The whole prompt is input + written + read, and count_tokens reports that whole prompt.
    counted = sdk.messages.count_tokens(
        model=MODEL, system=system, messages=[{"role": "user", "content": "A different question?"}]
    )
    assert counted.input_tokens == total_input(second)
    counters = emu.counters
    assert counters.cached_tokens_by_endpoint == {"anthropic": second.cache_read_input_tokens}
    assert counters.cache_write_tokens_by_endpoint == {"anthropic": first.cache_creation_input_tokens}
    assert counters.cached_tokens_explicit == second.cache_read_input_tokens
    assert counters.prompt_tokens == total_input(first) + total_input(second)


def test_no_breakpoint_no_caching(sdk: anthropic.Anthropic) -> None:
    """Anthropic caching is opt-in: the same long prompt twice without cache_control reads nothing."""
    body: dict[str, Any] = {"system": words(2000), "messages": [{"role": "user", "content": "Same?"}]}
    usage_of(sdk, **body)
    again = usage_of(sdk, **body)
    assert (again.cache_read_input_tokens, again.cache_creation_input_tokens) == (0, 0)


# Anthropic's documented usage example ("1-hour cache duration" section of
# platform.claude.com/docs/en/build-with-claude/prompt-caching), written out by hand.
DOCS_USAGE: dict[str, Any] = {
    "input_tokens": 2048,
    "cache_read_input_tokens": 1800,
    "cache_creation_input_tokens": 248,
    "output_tokens": 503,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
}
# The documented pre-warm answer's top-level fields ("Pre-warming the cache" on the same page).
DOCS_MESSAGE_KEYS = {"id", "type", "role", "content", "model", "stop_reason", "stop_sequence", "usage"}


def test_usage_shape_matches_the_documented_body(sdk: anthropic.Anthropic) -> None:
    system = [
        {"type": "text", "text": words(1200, "a"), "cache_control": {**EPHEMERAL, "ttl": "1h"}},
        {"type": "text", "text": words(300, "b"), "cache_control": EPHEMERAL},
    ]
    messages = [{"role": "user", "content": "Shape check?"}]
    raw = sdk.messages.with_raw_response.create(model=MODEL, max_tokens=64, system=system, messages=messages)
    body = raw.http_response.json()
    assert set(body) >= DOCS_MESSAGE_KEYS
    assert (body["type"], body["role"], body["stop_sequence"]) == ("message", "assistant", None)
    assert body["id"].startswith("msg_01")
    usage = body["usage"]
    assert set(usage) >= set(DOCS_USAGE)
    assert set(usage["cache_creation"]) == set(DOCS_USAGE["cache_creation"])
    for key, documented in DOCS_USAGE.items():
        assert type(usage[key]) is type(documented), key
    # "the current cache_creation_input_tokens field equals the sum of the values in the cache_creation object"
    assert usage["cache_creation_input_tokens"] == sum(usage["cache_creation"].values())
    assert DOCS_USAGE["cache_creation_input_tokens"] == sum(DOCS_USAGE["cache_creation"].values())
    assert usage["cache_creation"]["ephemeral_1h_input_tokens"] > 1200  # tokens up to the 1h breakpoint
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == 300  # from the 1h one to the 5m one
    assert raw.http_response.headers["request-id"].startswith("req_")


# --------------------------------------------------------------------------------- minimum length


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-sonnet-4-6", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-sonnet-4-20250514", 1024),
        ("claude-opus-4-1-20250805", 1024),
        ("claude-opus-4-8", 1024),
        ("claude-opus-4-7", 2048),
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
        ("claude-3-7-sonnet-20250219", 1024),
        ("claude-opus-5", 512),
        ("claude-fable-5-1", 512),
        ("some-unknown-model", 1024),
    ],
)
def test_documented_minimum_table(model: str, minimum: int) -> None:
    assert min_cacheable_tokens(model) == minimum


@pytest.mark.parametrize(
    ("model", "system_tokens", "cached"),
    [
        ("claude-sonnet-4-6", 900, False),
        ("claude-sonnet-4-6", 1100, True),
        ("claude-haiku-4-5", 3000, False),
        ("claude-haiku-4-5", 4200, True),
    ],
)
def test_below_the_minimum_nothing_is_written(
    sdk: anthropic.Anthropic, model: str, system_tokens: int, cached: bool
) -> None:
    system = cached_system(words(system_tokens))
    first = usage_of(sdk, model=model, system=system, messages=[{"role": "user", "content": "One?"}])
    second = usage_of(sdk, model=model, system=system, messages=[{"role": "user", "content": "Two?"}])
    if cached:
        assert first.cache_creation_input_tokens > system_tokens
        assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    else:
        # No error, no write, no read: "both counters 0" and everything billed as input.
        assert (first.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 0)
        assert second.input_tokens == total_input(second) > system_tokens


def test_minimum_override_knob(server: RunningServer, emu: Emulator, sdk: anthropic.Anthropic) -> None:
    emu.anthropic_cache_min_tokens = {"claude-sonnet-4-6": 100, "*": 5000}
    system = cached_system(words(200))
    assert usage_of(sdk, system=system, messages=[{"role": "user", "content": "x"}]).cache_creation_input_tokens > 0
    other = usage_of(sdk, model="claude-opus-4-8", system=system, messages=[{"role": "user", "content": "x"}])
    assert other.cache_creation_input_tokens == 0


# ---------------------------------------------------------------------------------- breakpoint errors


def test_more_than_four_breakpoints_is_the_real_400(sdk: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": words(300, f"s{i}"), "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as err:
        usage_of(sdk, system=system, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }
    assert body["request_id"].startswith("req_")


def test_top_level_cache_control_counts_toward_the_limit(sdk: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": words(400, f"s{i}"), "cache_control": EPHEMERAL} for i in range(4)]
    with pytest.raises(anthropic.BadRequestError, match=r"Found 5\."):
        usage_of(sdk, system=system, messages=[{"role": "user", "content": "hi"}], cache_control=EPHEMERAL)
    # The same request with the fourth marker on the last block (same TTL): automatic caching is a no-op.
    last = {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}]}
    usage = usage_of(sdk, system=system[:3], messages=[last], cache_control=EPHEMERAL)
    assert usage.cache_creation_input_tokens > 0


def test_top_level_ttl_conflicting_with_the_target_block(sdk: anthropic.Anthropic) -> None:
    last = {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {**EPHEMERAL, "ttl": "1h"}}]}
    with pytest.raises(anthropic.BadRequestError) as err:
        usage_of(sdk, messages=[last], cache_control={**EPHEMERAL, "ttl": "5m"})
    assert isinstance(err.value.body, dict)
    assert err.value.body["error"]["message"] == (
        "Top-level cache_control has ttl='5m' but the target block already has cache_control with ttl='1h'"
    )


def test_1h_after_5m_is_the_real_400(sdk: anthropic.Anthropic) -> None:
    tools = [
        {
            "name": "lookup",
            "description": "Look something up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            "cache_control": EPHEMERAL,
        }
    ]
    with pytest.raises(anthropic.BadRequestError) as err:
        usage_of(sdk, tools=tools, system=cached_system(words(1200), "1h"), messages=[{"role": "user", "content": "x"}])
    assert isinstance(err.value.body, dict)
    assert err.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "system.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' "
        "cache_control block. Note that blocks are processed in the following order: `tools`, `system`, "
        "`messages`.",
    }
    # 1h first, then 5m: accepted.
    tools[0]["cache_control"] = {**EPHEMERAL, "ttl": "1h"}
    ok = usage_of(sdk, tools=tools, system=cached_system(words(1200)), messages=[{"role": "user", "content": "x"}])
    assert ok.cache_creation.ephemeral_5m_input_tokens > 1200  # tools were below the minimum: all 5m


def test_bad_cache_control_values(sdk: anthropic.Anthropic) -> None:
    bad = {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {**EPHEMERAL, "ttl": "10m"}}]}
    with pytest.raises(
        anthropic.BadRequestError, match=r"messages\.0\.content\.0\.cache_control\.ttl: Input should be '5m' or '1h'"
    ):
        usage_of(sdk, messages=[bad])
    empty = {
        "role": "user",
        "content": [{"type": "text", "text": "", "cache_control": EPHEMERAL}, {"type": "text", "text": "x"}],
    }
    with pytest.raises(
        anthropic.BadRequestError,
        match=r"messages\.0\.content\.0\.text: cache_control cannot be set for empty text blocks",
    ):
        usage_of(sdk, messages=[empty])


PNG_A = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG_B = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def image(data: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}, **extra}


def test_breakpoints_on_image_and_tool_result_blocks(sdk: anthropic.Anthropic) -> None:
    doc = {"type": "text", "text": words(1500)}
    first = usage_of(sdk, messages=[{"role": "user", "content": [doc, image(PNG_A, cache_control=EPHEMERAL)]}])
    same = usage_of(sdk, messages=[{"role": "user", "content": [doc, image(PNG_A, cache_control=EPHEMERAL)]}])
    other = usage_of(sdk, messages=[{"role": "user", "content": [doc, image(PNG_B, cache_control=EPHEMERAL)]}])
    assert same.cache_read_input_tokens == first.cache_creation_input_tokens > 1500
    assert other.cache_read_input_tokens == 0  # the image bytes are part of the prefix
    use = {"type": "tool_use", "id": "toolu_01X", "name": "get_weather", "input": {"city": "Oslo"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_01X", "content": "Rain", "cache_control": EPHEMERAL}
    turn = [
        {"role": "user", "content": [doc]},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    wrote = usage_of(sdk, tools=[WEATHER], messages=turn).cache_creation_input_tokens
    follow = [*turn, {"role": "assistant", "content": "It rains."}, {"role": "user", "content": "Umbrella?"}]
    assert usage_of(sdk, tools=[WEATHER], messages=follow, cache_control=EPHEMERAL).cache_read_input_tokens == wrote


# ----------------------------------------------------------------------------------------- lookback


def text_blocks(n: int, seed: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": f"{seed} block {i}"} for i in range(n)]


def grown_turn(new_blocks: int, *, keep_previous_marker: bool, parallel_tools: bool = False) -> list[dict[str, Any]]:
    """The first request's user message (a document ending in a breakpoint), then one turn adding
    ``new_blocks`` blocks with a breakpoint on the last one."""
    doc: dict[str, Any] = {"type": "text", "text": words(1500, "doc")}
    if keep_previous_marker:
        doc["cache_control"] = EPHEMERAL
    if parallel_tools:
        calls = (new_blocks - 1) // 2
        uses = [
            {"type": "tool_use", "id": f"toolu_{i}", "name": "lookup", "input": {"q": str(i)}} for i in range(calls)
        ]
        results = [{"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"r{i}"} for i in range(calls)]
        assistant, user = uses, [*results, {"type": "text", "text": "and now?"}]
    else:
        assistant = text_blocks(1, "answer")
        user = text_blocks(new_blocks - 1, "more")
    user[-1] = {**user[-1], "cache_control": EPHEMERAL}
    assert len(assistant) + len(user) == new_blocks
    return [
        {"role": "user", "content": [doc]},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": user},
    ]


def first_turn() -> list[dict[str, Any]]:
    doc = {"type": "text", "text": words(1500, "doc"), "cache_control": EPHEMERAL}
    return [{"role": "user", "content": [doc]}]


@pytest.mark.parametrize(("new_blocks", "hit"), [(19, True), (20, False), (25, False)])
def test_lookback_is_20_positions_counting_the_breakpoint(sdk: anthropic.Anthropic, new_blocks: int, hit: bool) -> None:
    written = usage_of(sdk, messages=first_turn()).cache_creation_input_tokens
    assert written > 1500
    usage = usage_of(sdk, messages=grown_turn(new_blocks, keep_previous_marker=False))
    assert usage.cache_read_input_tokens == (written if hit else 0)
    # A miss rewrites the whole prefix: it is billed as a cache write, not lost.
    assert usage.cache_creation_input_tokens == total_input(usage) - usage.input_tokens - usage.cache_read_input_tokens


def test_25_block_turn_hits_with_a_breakpoint_at_the_previous_end(sdk: anthropic.Anthropic) -> None:
    written = usage_of(sdk, messages=first_turn()).cache_creation_input_tokens
    usage = usage_of(sdk, messages=grown_turn(25, keep_previous_marker=True))
    assert usage.cache_read_input_tokens == written
    assert usage.cache_creation_input_tokens > 0  # the 25 new blocks, written at the trailing breakpoint


def test_parallel_tool_calls_count_as_one_position_each_run(sdk: anthropic.Anthropic) -> None:
    """12 tool_use + 12 tool_result + 1 text = 25 blocks but 3 lookback positions (docs, Claude API)."""
    written = usage_of(sdk, messages=first_turn()).cache_creation_input_tokens
    usage = usage_of(sdk, messages=grown_turn(25, keep_previous_marker=False, parallel_tools=True))
    assert usage.cache_read_input_tokens == written


def test_reads_only_find_positions_where_a_breakpoint_wrote(sdk: anthropic.Anthropic) -> None:
    """The docs' "common mistake": a breakpoint on a block that changes every request never reads."""
    stable = text_blocks(3, "stable")
    stable[0]["text"] = words(1500)

    def request(stamp: str) -> Any:
        varying = {"type": "text", "text": f"time {stamp}", "cache_control": EPHEMERAL}
        return usage_of(sdk, messages=[{"role": "user", "content": [*stable, varying]}])

    first, second = request("10:00"), request("10:01")
    assert second.cache_read_input_tokens == 0
    assert second.cache_creation_input_tokens == first.cache_creation_input_tokens


# ---------------------------------------------------------------------------------------------- TTL


@pytest.mark.parametrize(("ttl", "seconds"), [("5m", 300), ("1h", 3600)])
def test_ttl_counts_from_the_last_use(
    sdk: anthropic.Anthropic, emu: Emulator, clock: FakeClock, ttl: str, seconds: int
) -> None:
    system = cached_system(words(1500), ttl)

    def read() -> int:
        return int(usage_of(sdk, system=system, messages=[{"role": "user", "content": "q"}]).cache_read_input_tokens)

    assert read() == 0  # write
    clock.advance(seconds - 1)
    assert read() > 0  # still alive, and the read refreshes it
    clock.advance(seconds - 1)
    assert read() > 0  # alive only because of the refresh (2 * seconds - 2 after the write)
    assert emu.anthropic_cache_entries == 1
    clock.advance(seconds)
    assert emu.anthropic_cache_entries == 0
    assert read() == 0  # expired exactly one TTL after the last use: rewritten
    assert read() > 0
    emu.evict_all()
    assert emu.anthropic_cache_entries == 0 and read() == 0


def test_an_entry_is_readable_as_soon_as_the_writer_is_answered(sdk: anthropic.Anthropic, emu: Emulator) -> None:
    """Unlike OpenAI, the entry exists once the writing response begins: even a stream cut early wrote it."""
    emu.inject_fault(stream_cut(after_chunks=1, endpoint="anthropic"))
    system = cached_system(words(1500))
    messages = [{"role": "user", "content": "a"}]
    events = list(sdk.messages.create(model=MODEL, max_tokens=64, system=system, stream=True, messages=messages))
    assert [e.type for e in events] == ["message_start"]  # the connection dropped after the first event
    assert usage_of(sdk, system=system, messages=[{"role": "user", "content": "b"}]).cache_read_input_tokens > 1500


# ------------------------------------------------------------------------------------------- stream


def test_stream_usage_in_message_start_and_cumulative_in_message_delta(sdk: anthropic.Anthropic) -> None:
    system = cached_system(words(1500))
    usage_of(sdk, system=system, messages=[{"role": "user", "content": "warm"}])
    stream = sdk.messages.create(
        model=MODEL, max_tokens=256, system=system, stream=True, messages=[{"role": "user", "content": "Stream?"}]
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_delta" in kinds and "content_block_stop" in kinds
    start = events[0].message.usage  # type: ignore[union-attr]
    delta = events[-2].usage  # type: ignore[union-attr]
    assert start.cache_read_input_tokens > 1500 and start.cache_creation_input_tokens == 0
    assert start.cache_creation is not None
    assert (delta.input_tokens, delta.cache_read_input_tokens, delta.cache_creation_input_tokens) == (
        start.input_tokens,
        start.cache_read_input_tokens,
        start.cache_creation_input_tokens,
    )
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert delta.output_tokens > start.output_tokens and text.startswith("Emulated reply to: Stream")
    assert events[-2].delta.stop_reason == "end_turn"  # type: ignore[union-attr]


def test_sdk_stream_helper_accumulates_the_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Hello"}]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "text" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


# ----------------------------------------------------------------------------------------- tool use

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(sdk: anthropic.Anthropic, stream: bool) -> None:
    question = {"role": "user", "content": "What is the weather in Florence?"}
    if stream:
        with sdk.messages.stream(model=MODEL, max_tokens=256, tools=[WEATHER], messages=[question]) as s:
            reply = s.get_final_message()
    else:
        reply = sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=[question])
    assert reply.stop_reason == "tool_use"
    call = next(b for b in reply.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Florence"}
    assert call.id.startswith("toolu_01")
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C"}
    final = sdk.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],
        messages=[question, {"role": "assistant", "content": reply.content}, {"role": "user", "content": [result]}],
    )
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and "Sunny, 24 C" in final.content[0].text


def test_a_marker_adds_no_prompt_tokens(sdk: anthropic.Anthropic) -> None:
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    plain = usage_of(sdk, tools=[WEATHER], messages=question)
    marked = usage_of(sdk, tools=[{**WEATHER, "cache_control": EPHEMERAL}], messages=question)
    assert total_input(marked) == total_input(plain)


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_use_for_each_item(sdk: anthropic.Anthropic, stream: bool) -> None:
    """The convention: "for each of: A, B and C" gets one tool_use per item; disable_parallel_tool_use one."""
    question = {"role": "user", "content": "What is the weather for each of: Paris, Rome and Oslo."}
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "tools": [WEATHER], "messages": [question]}
    if stream:
        with sdk.messages.stream(**params) as s:
            reply = s.get_final_message()
    else:
        reply = sdk.messages.create(**params)
    calls = [b for b in reply.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Rome"}, {"city": "Oslo"}]
    assert len({c.id for c in calls}) == 3
    results = [{"type": "tool_result", "tool_use_id": c.id, "content": f"Sunny {i}"} for i, c in enumerate(calls)]
    follow = [question, {"role": "assistant", "content": reply.content}, {"role": "user", "content": results}]
    final = sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=follow)
    assert final.stop_reason == "end_turn"
    single = sdk.messages.create(**params, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert len([b for b in single.content if b.type == "tool_use"]) == 1


def test_tool_choice_none_and_forced(sdk: anthropic.Anthropic) -> None:
    question = {"role": "user", "content": "Weather in Oslo?"}
    plain = sdk.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER], tool_choice={"type": "none"}, messages=[question]
    )
    assert plain.stop_reason == "end_turn"
    forced = sdk.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[question],
    )
    assert forced.stop_reason == "tool_use"


def test_orphan_tool_use_is_the_real_400(sdk: anthropic.Anthropic) -> None:
    use = {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"}}
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": "never mind"},
    ]
    with pytest.raises(
        anthropic.BadRequestError,
        match=r"messages\.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01A",
    ):
        sdk.messages.create(model=MODEL, max_tokens=64, tools=[WEATHER], messages=messages)


def test_tool_choice_change_keeps_the_system_entry_but_not_the_messages_one(sdk: anthropic.Anthropic) -> None:
    """Docs' invalidation table: tool_choice changes invalidate the messages cache only."""
    system = cached_system(words(1500))
    messages = [{"role": "user", "content": [{"type": "text", "text": words(300, "m"), "cache_control": EPHEMERAL}]}]
    first = usage_of(sdk, system=system, tools=[WEATHER], messages=messages, tool_choice={"type": "auto"})
    system_prefix = first.cache_creation_input_tokens - 300 - 5  # minus the message block and its role marker
    same = usage_of(sdk, system=system, tools=[WEATHER], messages=messages, tool_choice={"type": "auto"})
    assert same.cache_read_input_tokens == first.cache_creation_input_tokens
    changed = usage_of(sdk, system=system, tools=[WEATHER], messages=messages, tool_choice={"type": "any"})
    assert changed.cache_read_input_tokens == system_prefix
    assert changed.cache_creation_input_tokens == 305


# ---------------------------------------------------------------------------- pre-warm, auth, faults


def test_max_tokens_zero_prewarms(sdk: anthropic.Anthropic) -> None:
    system = cached_system(words(1500))
    warm = sdk.messages.create(
        model=MODEL, max_tokens=0, system=system, messages=[{"role": "user", "content": "warmup"}]
    )
    assert (warm.content, warm.stop_reason, warm.usage.output_tokens) == ([], "max_tokens", 0)
    assert warm.usage.cache_creation_input_tokens > 1500
    real = usage_of(sdk, system=system, messages=[{"role": "user", "content": "Real question"}])
    assert real.cache_read_input_tokens == warm.usage.cache_creation_input_tokens
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: 0 cannot be combined with tool_choice"):
        sdk.messages.create(
            model=MODEL,
            max_tokens=0,
            tools=[WEATHER],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "warmup"}],
        )


def test_wrong_key_and_missing_version(server: RunningServer, emu: Emulator) -> None:
    emu.api_keys = frozenset({"sk-ant-good"})
    bad = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-bad", max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert isinstance(err.value.body, dict)
    assert err.value.body["error"]["type"] == "authentication_error"
    assert "sk-ant-bad" not in str(err.value) and "sk-ant-bad" not in str(emu.last_request)
    # SDK 0.x sends `x-api-key`, 2.x `Authorization: Bearer`: whichever came, it is redacted.
    assert emu.last_request is not None
    sent = {h: v for h, v in emu.last_request.headers.items() if h in ("authorization", "x-api-key")}
    assert sent and set(sent.values()) == {"***"}
    plain = httpx.post(
        f"{server.anthropic_base_url}/v1/messages",
        headers={"x-api-key": "sk-ant-good"},
        json={"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
    )
    assert plain.status_code == 400
    assert plain.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    assert emu.last_request is not None and emu.last_request.headers["x-api-key"] == "***"


def test_rate_limit_and_overloaded_faults(sdk: anthropic.Anthropic, emu: Emulator) -> None:
    emu.inject_fault(anthropic_rate_limit())
    emu.inject_fault(anthropic_overloaded())
    with pytest.raises(anthropic.RateLimitError) as limited:
        usage_of(sdk, messages=[{"role": "user", "content": "x"}])
    assert isinstance(limited.value.body, dict) and limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        usage_of(sdk, messages=[{"role": "user", "content": "x"}])
    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    emu.inject_fault(529, endpoint="anthropic")  # a bare status gets the realistic body too
    with pytest.raises(anthropic.OverloadedError):
        usage_of(sdk, messages=[{"role": "user", "content": "x"}])
    assert usage_of(sdk, messages=[{"role": "user", "content": "x"}]).output_tokens > 0
    assert emu.counters.errors_injected == 3
