"""The real `ChatOpenAI` on the emulator's model of OpenAI's cache routing, over loopback HTTP.

What `with_prompt_caching` / `PromptCachingMiddleware` buy on OpenAI's published physics (several cache
machines, routing on the prefix start and `prompt_cache_key`, overflow above ~15 requests a minute per
prefix+key, a prefix readable only after its writer completed): counts come from the emulator's
counters and request log, never from timing. A burst is made certainly concurrent with
`Emulator.hold_answers`, and the emulator's clock is a `FakeClock` that does not move.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

from cache_integrations.langchain import PromptCachingMiddleware, get_cache_usage_callback, with_prompt_caching
from cache_integrations.strategies import prompt_cache_key_for
from cache_integrations.testing import Emulator, FakeClock, OpenAIPhysics, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

HANDBOOK = LONG_SYSTEM_PROMPT + "\n\n" + LONG_SYSTEM_PROMPT.replace("Rule", "Addendum rule")  # ~3.4k tokens
TOPICS = [
    "naming", "errors", "typing", "tests", "state", "io", "logging", "secrets", "benchmarks", "docs",
    "retries", "timeouts", "caching", "queues", "locks", "imports", "packaging", "release", "review", "style",
]  # fmt: skip
BURST = {"max_concurrency": 20}


@pytest.fixture
def emu() -> Emulator:
    return Emulator(clock=FakeClock(), openai_physics=OpenAIPhysics())


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _openai(server: RunningServer) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-5-mini", api_key="test-key", base_url=server.openai_base_url, max_retries=0)


def _batch_inputs() -> list[Any]:
    return [[("system", HANDBOOK), ("human", f"{topic}: which rule applies first?")] for topic in TOPICS]


def _chat_requests(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path == "/v1/chat/completions"]


def _hits(emu: Emulator) -> int:
    return sum(1 for r in _chat_requests(emu) if r.usage and r.usage["prompt_tokens_details"]["cached_tokens"] > 0)


def _home(key: str) -> int:
    """The machine a `prompt_cache_key` sends the handbook to (the router is sha256-based: fixed forever)."""
    probe = Emulator(clock=FakeClock(), openai_physics=OpenAIPhysics())
    with probe.serve() as running:
        _openai(running).invoke([("system", HANDBOOK), ("human", "probe")], prompt_cache_key=key)
    replica = probe.requests[-1].replica
    assert replica is not None
    return replica


def _tenant_pair(prefix: str) -> tuple[str, str]:
    """Two thread ids whose hashed keys route the handbook to different machines."""
    first = f"{prefix}-a"
    home = _home(prompt_cache_key_for(first))
    other = next(f"{prefix}-{i}" for i in range(100) if _home(prompt_cache_key_for(f"{prefix}-{i}")) != home)
    return first, other


# --------------------------------------------------------------------------------------- batch warm-up


def test_a_plain_cold_batch_of_twenty_misses_every_time(emu: Emulator, server: RunningServer) -> None:
    gate = emu.hold_answers(20, endpoint="openai")  # the 20 requests are in flight together, as in a real burst
    _openai(server).batch(_batch_inputs(), config=BURST)  # type: ignore[arg-type]
    assert gate.is_open and gate.arrived == 20
    assert emu.counters.requests_by_endpoint["openai"] == 20
    assert emu.counters.implicit_cache_hits == 0 and emu.counters.cached_tokens_implicit == 0


def test_with_prompt_caching_warms_one_then_fans_out_and_hits_fourteen(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_openai(server), provider="openai")
    with get_cache_usage_callback() as usage:
        answers = llm.batch(_batch_inputs(), config=BURST)  # type: ignore[arg-type]
    assert len(answers) == 20
    requests = _chat_requests(emu)
    assert len(requests) == 20 and "prompt_cache_key" not in requests[0].body
    # round2.md's independent model: the leader misses; 14 of the 19 fanned out stay on the leader's machine
    # (15 requests a minute per prefix) and hit; 5 overflow to 5 other, cold machines and miss.
    assert emu.counters.implicit_cache_hits == 14 == _hits(emu)
    home = requests[0].replica
    assert sum(1 for r in requests if r.replica == home) == 15
    assert usage.total.cache_read_tokens == emu.counters.cached_tokens_implicit > 14 * 3000


def test_two_keys_each_warmed_hit_eighteen_of_twenty(emu: Emulator, server: RunningServer) -> None:
    tenants = _tenant_pair("tenant")
    configs: Any = [{"metadata": {"thread_id": tenants[i % 2]}, "max_concurrency": 20} for i in range(20)]
    leaders = emu.hold_answers(2, endpoint="openai", timeout=5)  # the first wave is sent together...
    fan_out = emu.hold_answers(18, endpoint="openai", timeout=5)  # ...and so is the second
    with_prompt_caching(_openai(server), provider="openai").batch(_batch_inputs(), config=configs)
    assert leaders.arrived == 2 and fan_out.arrived == 18
    # One leader per prefix+key (2 misses), then 9 per key on its own machine, well under the rate: 18 hits.
    assert emu.counters.implicit_cache_hits == 18
    by_key: dict[str, set[int | None]] = {}
    for r in _chat_requests(emu):
        by_key.setdefault(r.body["prompt_cache_key"], set()).add(r.replica)
    assert sorted(len(replicas) for replicas in by_key.values()) == [1, 1]


async def test_abatch_warms_the_same_way(emu: Emulator, server: RunningServer) -> None:
    await with_prompt_caching(_openai(server), provider="openai").abatch(_batch_inputs(), config=BURST)  # type: ignore[arg-type]
    assert emu.counters.implicit_cache_hits == 14


# ------------------------------------------------------------------------------------ prompt_cache_key


def test_two_tenants_keep_their_own_machine_and_hits_with_a_key_each(emu: Emulator, server: RunningServer) -> None:
    a, b = _tenant_pair("thread")
    llm = with_prompt_caching(_openai(server), provider="openai")
    with get_cache_usage_callback() as usage:
        for turn in range(12):
            for tenant in (a, b):
                config: Any = {"metadata": {"thread_id": tenant}}
                llm.invoke([("system", HANDBOOK), ("human", f"{tenant} turn {turn}")], config=config)
    requests = _chat_requests(emu)
    replicas = {
        t: {r.replica for r in requests if r.body["prompt_cache_key"] == prompt_cache_key_for(t)} for t in (a, b)
    }
    assert len(replicas[a]) == len(replicas[b]) == 1 and replicas[a] != replicas[b]
    # 24 requests on one prefix, but 12 per prefix+key: nothing overflows, each tenant hits from its 2nd turn.
    assert emu.counters.implicit_cache_hits == 22
    reads = [c.usage.cache_read_tokens for c in usage.calls]
    assert reads[:2] == [0, 0] and all(r > 0 for r in reads[2:])
    assert sum(reads) == emu.counters.cached_tokens_implicit


def test_without_a_key_the_same_traffic_overflows_and_loses_hits(emu: Emulator, server: RunningServer) -> None:
    llm = _openai(server)
    for turn in range(12):
        for tenant in ("a", "b"):
            llm.invoke([("system", HANDBOOK), ("human", f"{tenant} turn {turn}")])
    requests = _chat_requests(emu)
    assert len({r.replica for r in requests}) == 8  # the prefix is spread over every machine
    # 15 stay home (14 hits); 7 overflow to cold machines; the last 2 wrap around to machines warmed by overflow.
    assert emu.counters.implicit_cache_hits == 16 < 22


# -------------------------------------------------------------------------------------------- agents


@tool
def lookup_rule(topic: str) -> str:
    """Look up the handbook rule for a topic."""
    return f"Rule for {topic}: keep it explicit and tested."


def _run_agents(server: RunningServer, middleware: list[Any]) -> list[Any]:
    agent = create_agent(
        _openai(server), [lookup_rule], system_prompt=HANDBOOK, middleware=middleware, checkpointer=InMemorySaver()
    )
    with get_cache_usage_callback() as usage:
        for tenant in ("agent-a", "agent-b", "agent-c", "agent-d"):
            config: Any = {"configurable": {"thread_id": tenant}}
            for topic in ("naming", "errors", "tests"):
                agent.invoke({"messages": [("human", f"Look up the rule for {topic}.")]}, config=config)
    return list(usage.calls)


def test_agent_loop_with_the_middleware_one_machine_per_thread_hits_from_the_second_call(
    emu: Emulator, server: RunningServer
) -> None:
    calls = _run_agents(server, [PromptCachingMiddleware(provider="openai")])
    requests = _chat_requests(emu)
    assert len(requests) == 24  # 4 threads x 3 questions x (tool call + answer)
    for tenant in ("agent-a", "agent-b", "agent-c", "agent-d"):
        mine = [r for r in requests if r.body["prompt_cache_key"] == prompt_cache_key_for(tenant)]
        assert len(mine) == 6 and len({r.replica for r in mine}) == 1
        assert all(r.usage["prompt_tokens_details"]["cached_tokens"] > 0 for r in mine[1:])
    reads = [c.usage.cache_read_tokens for c in calls]
    assert sum(reads) == emu.counters.cached_tokens_implicit
    assert emu.counters.implicit_cache_hits >= 20


def test_agent_loop_without_the_key_overflows(emu: Emulator, server: RunningServer) -> None:
    calls = _run_agents(server, [])
    requests = _chat_requests(emu)
    assert len(requests) == 24 and all("prompt_cache_key" not in r.body for r in requests)
    assert len({r.replica for r in requests}) == 8
    misses = [i for i, c in enumerate(calls) if c.usage.cache_read_tokens == 0]
    assert len(misses) > 4  # more than one cold call per thread: the overflow found cold machines
    assert emu.counters.implicit_cache_hits < 20
