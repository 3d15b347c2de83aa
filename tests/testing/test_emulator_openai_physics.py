"""OpenAI's routing physics in the emulator: machines, routing on the prefix start and key, overflow, eviction.

Every count here follows from the published rules and the model's documented choices (``physics.py``);
nothing depends on timing: concurrency is made certain with ``hold_answers`` and time moves only on the
fake clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, OpenAIPhysics, count_tokens
from cache_integrations.testing.physics import Router

URL = "/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-test"}
SYSTEM = " ".join(f"policy{i} applies to every ticket of team {i % 40};" for i in range(400))  # ~3k tokens


def body(question: str, *, key: str | None = None, system: str = SYSTEM, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "gpt-5-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        **extra,
    }
    if key is not None:
        out["prompt_cache_key"] = key
    return out


def cached(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["usage"]["prompt_tokens_details"]["cached_tokens"])


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock, openai_physics=OpenAIPhysics())


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
        yield c


def _replicas(emu: Emulator) -> list[int | None]:
    return [r.replica for r in emu.requests if r.path == URL]


def test_a_repeat_on_the_same_machine_hits_in_128_token_steps(client: httpx.Client, emu: Emulator) -> None:
    first = client.post(URL, json=body("alpha question"), headers=AUTH)
    second = client.post(URL, json=body("beta question"), headers=AUTH)
    assert cached(first) == 0
    shared = count_tokens("<|system|>\n" + SYSTEM) + count_tokens("<|user|>")
    assert cached(second) == shared - shared % 128 > 1024
    assert len(set(_replicas(emu))) == 1


def test_routing_uses_the_prefix_start_and_the_key(client: httpx.Client, emu: Emulator) -> None:
    client.post(URL, json=body("q1"), headers=AUTH)
    client.post(URL, json=body("q2", system=SYSTEM + " An appendix far past the first 256 tokens."), headers=AUTH)
    keys = [f"tenant-{i}" for i in range(12)]
    for key in keys:
        client.post(URL, json=body("q", key=key), headers=AUTH)
    replicas = _replicas(emu)
    assert replicas[0] == replicas[1]  # same first 256 tokens: same machine, whatever follows
    assert replicas[2:] == [_home(k) for k in keys]  # the key is part of the route, deterministically
    assert len(set(replicas[2:])) > 1  # so keys spread one prefix over several machines


def test_a_prefix_is_readable_only_after_the_request_that_wrote_it_completes(
    client: httpx.Client, emu: Emulator
) -> None:
    with client.stream("POST", URL, json=body("writer", stream=True), headers=AUTH) as writer:
        concurrent = client.post(URL, json=body("while the writer streams"), headers=AUTH)
        writer.read()
    after = client.post(URL, json=body("after the writer completed"), headers=AUTH)
    assert cached(concurrent) == 0
    assert cached(after) > 1024


def test_a_burst_held_together_misses_entirely_and_the_next_request_hits(emu: Emulator) -> None:
    emu.hold_answers(20, endpoint="openai")
    results: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
            value = cached(c.post(URL, json=body(f"burst {i}"), headers=AUTH))
        with lock:
            results.append(value)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 20
    replicas = _replicas(emu)
    home = max(set(replicas), key=replicas.count)
    assert replicas.count(home) == 15  # the rate limit: 15 per minute stay home, 5 overflow
    assert len(set(replicas)) == 6  # and the overflow spreads over five other machines


def test_warm_one_then_fan_out_hits_fourteen_of_twenty_under_any_scheduling(emu: Emulator) -> None:
    """round2.md's independent model: warm one, then 19 at once: 14 land home and hit, 5 overflow and miss."""
    with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
        leader = cached(c.post(URL, json=body("leader"), headers=AUTH))
    results: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
            value = cached(c.post(URL, json=body(f"fan-out {i}"), headers=AUTH))
        with lock:
            results.append(value)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(19)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hits = sum(1 for value in [leader, *results] if value > 0)
    assert hits == 14
    assert emu.counters.implicit_cache_hits == 14


def test_overflow_above_the_rate_goes_to_other_machines_until_the_window_passes(
    client: httpx.Client, emu: Emulator, clock: FakeClock
) -> None:
    values = [cached(client.post(URL, json=body(f"sequential {i}"), headers=AUTH)) for i in range(20)]
    assert values[0] == 0 and all(v > 0 for v in values[1:15])
    assert values[15:] == [0] * 5  # five cold machines, one request each
    replicas = _replicas(emu)
    assert len(set(replicas[:15])) == 1 and len(set(replicas[15:])) == 5 and replicas[0] not in replicas[15:]
    clock.advance(61)  # the minute has passed: the prefix+key is under the rate again
    assert cached(client.post(URL, json=body("a minute later"), headers=AUTH)) > 0
    assert _replicas(emu)[-1] == replicas[0]


def test_idle_entries_are_evicted_after_five_minutes_and_24h_retention_keeps_them(
    client: httpx.Client, clock: FakeClock
) -> None:
    client.post(URL, json=body("write"), headers=AUTH)
    clock.advance(299)
    assert cached(client.post(URL, json=body("read refreshes"), headers=AUTH)) > 0
    clock.advance(299)
    assert cached(client.post(URL, json=body("still warm"), headers=AUTH)) > 0
    clock.advance(301)
    assert cached(client.post(URL, json=body("idle too long"), headers=AUTH)) == 0

    retained = "24h-retained " + SYSTEM
    client.post(URL, json=body("write", system=retained, prompt_cache_retention="24h"), headers=AUTH)
    clock.advance(6 * 3600)
    hit = client.post(URL, json=body("hours later", system=retained, prompt_cache_retention="24h"), headers=AUTH)
    assert cached(hit) > 0
    clock.advance(24 * 3600 + 1)
    gone = client.post(URL, json=body("a day later", system=retained, prompt_cache_retention="24h"), headers=AUTH)
    assert cached(gone) == 0


def test_prompts_under_1024_tokens_are_never_cached(client: httpx.Client) -> None:
    short = " ".join(f"w{i}" for i in range(900))
    client.post(URL, json=body("one", system=short), headers=AUTH)
    assert cached(client.post(URL, json=body("two", system=short), headers=AUTH)) == 0


def test_two_tenants_with_keys_keep_their_own_machines_and_hits(client: httpx.Client, emu: Emulator) -> None:
    # Two keys whose home machines differ (the router is sha256-based, so this pair is fixed forever).
    a, b = "tenant-a", next(f"tenant-{i}" for i in range(100) if _home(f"tenant-{i}") != _home("tenant-a"))
    values = {a: [], b: []}  # type: dict[str, list[int]]
    for i in range(12):
        for key in (a, b):
            values[key].append(cached(client.post(URL, json=body(f"{key} turn {i}", key=key), headers=AUTH)))
    replicas = _replicas(emu)
    assert len(set(replicas[0::2])) == 1 and len(set(replicas[1::2])) == 1 and replicas[0] != replicas[1]
    for key in (a, b):  # 24 requests on one prefix, but 12 per prefix+key: no overflow, hits from turn 2
        assert values[key][0] == 0 and all(v > 0 for v in values[key][1:])


def test_without_keys_the_same_traffic_overflows_and_loses_hits(client: httpx.Client) -> None:
    values = [cached(client.post(URL, json=body(f"turn {i}"), headers=AUTH)) for i in range(24)]
    # 15 stay home (14 hits); the next 7 overflow to the 7 other machines (cold: misses); the last 2 wrap
    # around to machines the overflow already warmed (hits): 16 of 24, against 22 of 24 with a key each.
    assert sum(1 for v in values if v > 0) == 16
    assert values[15:22] == [0] * 7 and values[22] > 0 and values[23] > 0


def _home(key: str) -> int:
    emu = Emulator(clock=FakeClock(), openai_physics=OpenAIPhysics())
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        c.post(URL, json=body("probe", key=key), headers=AUTH)
    replica = emu.requests[-1].replica
    assert replica is not None
    return replica


def test_router_overflow_order_and_window() -> None:
    router = Router(OpenAIPhysics(replicas=4, max_requests_per_window=2, rate_window=60))
    decisions = [router.route(5, 0.0) for _ in range(6)]
    assert [d.replica for d in decisions] == [1, 1, 2, 3, 0, 2]  # home 1; overflow 2, 3, 0, then wraps
    assert [d.overflow for d in decisions] == [False, False, True, True, True, True]
    assert router.route(5, 60.0).replica == 1  # everything before t=0+60 left the window


def test_physics_knobs_are_validated() -> None:
    for bad in ({"replicas": 0}, {"route_tokens": 0}, {"max_requests_per_window": 0}, {"idle_ttl": 0}):
        with pytest.raises(ValueError, match="OpenAIPhysics"):
            OpenAIPhysics(**bad)  # type: ignore[arg-type]


def test_a_gate_that_times_out_opens_and_takes_no_more_requests(emu: Emulator) -> None:
    first = emu.hold_answers(2, endpoint="openai", timeout=0.05)
    second = emu.hold_answers(1, endpoint="openai")
    with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
        lone = c.post(URL, json=body("alone"), headers=AUTH)  # waits for a partner that never comes
        after = c.post(URL, json=body("next"), headers=AUTH)
    assert lone.status_code == after.status_code == 200
    assert first.is_open and first.arrived == 1
    assert second.is_open and second.arrived == 1  # the next request went to the next gate
    with pytest.raises(ValueError, match="n must be >= 1"):
        emu.hold_answers(0)


async def test_a_gate_holds_async_clients_until_the_burst_is_in(emu: Emulator) -> None:
    gate = emu.hold_answers(3, endpoint="openai")
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://emulator") as c:
        answers = await asyncio.gather(*(c.post(URL, json=body(f"async {i}"), headers=AUTH) for i in range(3)))
    assert gate.arrived == 3 and [cached(a) for a in answers] == [0, 0, 0]


def test_router_forgets_routes_that_left_the_window() -> None:
    router = Router(OpenAIPhysics())
    for route in range(Router.MAX_IDLE_ROUTES):
        router.route(route, 0.0)
    assert len(router) == Router.MAX_IDLE_ROUTES
    router.route(-1, 61.0)  # a new route past the window: the idle ones are swept
    assert len(router) == 1
