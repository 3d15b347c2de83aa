"""Anthropic: the ChatAnthropic you already have, with our middleware, without it, and with the best peer.

Three rows on the same LangChain v1 agent workloads, the real `langchain_anthropic.ChatAnthropic` over loopback
HTTP to the emulator's Messages API (Anthropic's caching rules: at most 4 breakpoints, 20-position lookback,
1024-token minimum for Sonnet 4.6, 5-minute and 1-hour entries): `PromptCachingMiddleware` (ours),
no middleware, and langchain-anthropic's `AnthropicPromptCachingMiddleware` (the peer: system, last tool and
top-level automatic caching, 5 minutes). Billed cost uses genai-prices' Claude Sonnet 4.6 prices through the
PriceBook (writes 1.25x the input price for 5 minutes, 2x for 1 hour, reads 0.1x); "vs peer" is the cost over
the peer's. The chat's sixth turn pastes a 25-page report as 25 content blocks (past the 20-position lookback);
the human-paced run waits 7 minutes between turns on the emulator's and the strategy's fake clock. The
emulator counts a run of parallel tool_use (or tool_result) blocks as one lookback position, as the docs say,
so parallel calls alone do not outrun the lookback. LiteLLM's `cache_control_injection_points` is not
measured: litellm is not in the lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_anthropic.middleware import AnthropicPromptCachingMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool

from cache_integrations.langchain import PromptCachingMiddleware
from cache_integrations.pricing import default_price_book
from cache_integrations.testing import Emulator, FakeClock, RunningServer
from cache_integrations.usage import Usage

MODEL = "claude-sonnet-4-6"
PROVIDERS = ("anthropic",)
SYSTEM = "You are the operations assistant of a logistics company. Follow the handbook.\n\n" + "\n".join(
    f"Handbook rule {i}: confirm the shipment id, quote the tool output verbatim, and escalate delays over "
    f"{i % 7 + 2} hours to the duty manager."
    for i in range(120)
)
CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo")
FAST_GAP = 30.0
HUMAN_GAP = 7 * 60.0

ROWS: tuple[tuple[str, Callable[[FakeClock], Any]], ...] = (
    ("ChatAnthropic + PromptCachingMiddleware", lambda clock: PromptCachingMiddleware(clock=clock.monotonic)),
    ("ChatAnthropic (no middleware)", lambda clock: None),
    ("ChatAnthropic + AnthropicPromptCachingMiddleware (peer)", lambda clock: AnthropicPromptCachingMiddleware()),
)


@tool
def get_weather(city: str) -> str:
    """Current weather and delivery conditions for a city."""
    return f"{city}: clear, 21 C, roads open, no delivery delays reported in the last 6 hours."


@tool
def track_shipment(shipment_id: str) -> str:
    """Where a shipment is now."""
    return f"Shipment {shipment_id}: left the hub at 06:10, next scan expected at the regional depot."


@dataclass
class AnthropicRow:
    workload: str
    setup: str
    calls: int
    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    cost: Decimal | None
    ratio_to_peer: float | None = None


def _agent(server: RunningServer, middleware: Any, tools: list[Any]) -> Any:
    model = ChatAnthropic(  # type: ignore[call-arg]
        model=MODEL, base_url=server.anthropic_base_url, api_key="sk-ant-bench", max_retries=0
    )
    return create_agent(model, tools, system_prompt=SYSTEM, middleware=[middleware] if middleware else [])


def _six_step_agent(server: RunningServer, middleware: Any, clock: FakeClock) -> list[BaseMessage]:
    agent = _agent(server, middleware, [get_weather, track_shipment])
    history: list[BaseMessage] = []
    for question in ("Track shipment SH-1042.", "What is the weather in Oslo?", "Track shipment SH-2077 now."):
        history = agent.invoke({"messages": [*history, HumanMessage(question)]})["messages"]
    return history


def _chat(server: RunningServer, middleware: Any, clock: FakeClock, gap: float) -> list[BaseMessage]:
    agent = _agent(server, middleware, [])
    history: list[BaseMessage] = []
    for turn in range(12):
        if turn == 5:
            pages = [
                {"type": "text", "text": f"Report page {p}: depot {p} handled {40 + p} pallets."} for p in range(25)
            ]
            question = HumanMessage([{"type": "text", "text": "Here is the weekly report."}, *pages])
        else:
            question = HumanMessage(f"Turn {turn}: what does the handbook say about delays at depot {turn}?")
        history = agent.invoke({"messages": [*history, question]})["messages"]
        clock.advance(gap)
    return history


def _long_chat(server: RunningServer, middleware: Any, clock: FakeClock) -> list[BaseMessage]:
    return _chat(server, middleware, clock, FAST_GAP)


def _human_paced_chat(server: RunningServer, middleware: Any, clock: FakeClock) -> list[BaseMessage]:
    return _chat(server, middleware, clock, HUMAN_GAP)


def _parallel_agent(server: RunningServer, middleware: Any, clock: FakeClock) -> list[BaseMessage]:
    agent = _agent(server, middleware, [get_weather, track_shipment])
    history: list[BaseMessage] = []
    for k in range(3):
        cities = ", ".join(CITIES[k:] + CITIES[:k])
        question = HumanMessage(f"Use get_weather for each of: {cities}.")
        history = agent.invoke({"messages": [*history, question]})["messages"]
    return history


WORKLOADS: tuple[tuple[str, Callable[[RunningServer, Any, FakeClock], list[BaseMessage]]], ...] = (
    ("6-step agent", _six_step_agent),
    ("long multi-turn chat (12 turns, 30 s apart; turn 6 pastes 25 blocks)", _long_chat),
    ("the same chat, human-paced (7 min between turns)", _human_paced_chat),
    ("parallel-tool agent (3 turns x 6 parallel calls)", _parallel_agent),
)


def _details(message: AIMessage) -> tuple[int, int, int, int, int]:
    """(input incl. cache, read, 5m write, 1h write, output) as ChatAnthropic reports them."""
    usage: Any = message.usage_metadata or {}
    details = usage.get("input_token_details") or {}
    w5 = int(details.get("ephemeral_5m_input_tokens") or 0)
    w1 = int(details.get("ephemeral_1h_input_tokens") or 0)
    if not (w5 or w1):
        w5 = int(details.get("cache_creation") or 0)
    return (
        int(usage.get("input_tokens") or 0),
        int(details.get("cache_read") or 0),
        w5,
        w1,
        int(usage.get("output_tokens") or 0),
    )


def _cost(calls: list[tuple[int, int, int, int, int]]) -> Decimal | None:
    """Billed cost: the PriceBook's genai-prices rates (5-minute writes at 1.25x), plus the 1-hour writes'
    extra 0.75x of the input price."""
    book = default_price_book()
    units = book.unit_prices(MODEL, PROVIDERS)
    if units is None:
        return None
    total = Decimal(0)
    for inp, read, w5, w1, out in calls:
        cost = book.cost(Usage(inp, read, w5 + w1, out), MODEL, PROVIDERS)
        if cost is None:
            return None
        total += cost.total + Decimal(w1) * units[0] * Decimal("0.75") / Decimal(1_000_000)
    return total


def _run(
    workload: Callable[[RunningServer, Any, FakeClock], list[BaseMessage]], make: Callable[[FakeClock], Any]
) -> tuple[list[tuple[int, int, int, int, int]], Emulator]:
    clock = FakeClock()
    emu = Emulator(clock=clock)
    with emu.serve() as server:
        history = workload(server, make(clock), clock)
    calls = [_details(m) for m in history if isinstance(m, AIMessage)]
    counters = emu.counters
    if sum(c[1] for c in calls) != counters.cached_tokens_by_endpoint["anthropic"]:
        raise AssertionError("reported cache reads differ from the emulator's")
    if sum(c[2] + c[3] for c in calls) != counters.cache_write_tokens_by_endpoint["anthropic"]:
        raise AssertionError("reported cache writes differ from the emulator's")
    return calls, emu


def measure() -> list[AnthropicRow]:
    rows: list[AnthropicRow] = []
    for name, workload in WORKLOADS:
        group: list[AnthropicRow] = []
        for setup, make in ROWS:
            calls, _ = _run(workload, make)
            group.append(
                AnthropicRow(
                    workload=name,
                    setup=setup,
                    calls=len(calls),
                    input_tokens=sum(c[0] for c in calls),
                    cache_read=sum(c[1] for c in calls),
                    cache_write_5m=sum(c[2] for c in calls),
                    cache_write_1h=sum(c[3] for c in calls),
                    cost=_cost(calls),
                )
            )
        peer = group[-1].cost
        for row in group:
            if row.cost is not None and peer:
                row.ratio_to_peer = float(row.cost / peer)
        rows += group
    return rows


def table(rows: list[AnthropicRow]) -> list[str]:
    out = [
        "| workload | setup | calls | input tokens | cache read | cache write (5m / 1h) | billed cost | vs peer |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cost = "n/a" if r.cost is None else f"${r.cost:.5f}"
        ratio = "n/a" if r.ratio_to_peer is None else f"{r.ratio_to_peer:.3f}"
        out.append(
            f"| {r.workload} | {r.setup} | {r.calls} | {r.input_tokens} | {r.cache_read} "
            f"| {r.cache_write_5m} / {r.cache_write_1h} | {cost} | {ratio} |"
        )
    return out


if __name__ == "__main__":  # pragma: no cover - `python -m bench.anthropic` prints this section alone
    print("\n".join(table(measure())))
