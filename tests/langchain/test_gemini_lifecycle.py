"""ChatGemini's explicit caches against the emulator: create once, reuse, refresh, recover, delete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk, HumanMessage, SystemMessage

from cache_integrations import PermissionDeniedError, Usage
from cache_integrations.explicit import SQLiteRegistry
from cache_integrations.langchain import ChatGemini, get_cache_usage_callback
from cache_integrations.testing import CacheRules, Emulator, FakeClock
from cache_integrations.testing.faults import Fault

from ..wire import gemini_cached, model_usages

DOC = "\n".join(
    f"Section {i}: unit {i} grew revenue by {i * 3} percent; the audit committee reviewed contract {1000 + i}."
    for i in range(250)
)
SYSTEM = "Answer strictly from the annual report. Quote section numbers."


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


def _llm(emu: Emulator, clock: FakeClock, **kwargs: Any) -> ChatGemini:
    transport = emu.transport()
    kwargs.setdefault("cache_registry", "memory")
    llm = ChatGemini(
        api_key=kwargs.pop("api_key", "gemini-test-key"),
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
    llm.cache_manager.clock = clock.time
    return llm


def _creates(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.endswith("/cachedContents"))


def _no_cached_request_carries_prefix_fields(emu: Emulator) -> None:
    generate = [r for r in emu.requests if r.body and "cachedContent" in r.body]
    assert generate, "no request used a cache"
    for r in generate:
        assert not {"systemInstruction", "tools", "toolConfig"} & set(r.body), r.body


def _collect(chunks: Iterator[BaseMessageChunk]) -> AIMessage:
    full: BaseMessageChunk | None = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_twenty_questions_over_a_pinned_document_create_exactly_one_cache(emu: Emulator, clock: FakeClock) -> None:
    with emu.serve() as server:
        llm = ChatGemini(api_key="gemini-test-key", base_url=server.gemini_base_url, cache_registry="memory")
        llm.cache_manager.clock = clock.time
        with get_cache_usage_callback() as usage:
            doc = llm.cache_context(DOC, system=SYSTEM)
            replies = [doc.invoke(f"What happened to unit {i}?") for i in range(20)]
    assert emu.counters.caches_created == 1 and _creates(emu) == 1
    assert doc.tokens > 1024 and doc.name.startswith("cachedContents/")
    assert all(
        r.usage_metadata and r.usage_metadata["input_token_details"]["cache_read"] == doc.tokens for r in replies
    )
    # the pin's creation and storage are reported once, on the first call that used it
    first = replies[0].usage_metadata
    assert first and first["input_token_details"]["cache_creation"] == doc.tokens
    assert all("cache_creation" not in (r.usage_metadata or {})["input_token_details"] for r in replies[1:])
    _no_cached_request_carries_prefix_fields(emu)
    assert replies[0].response_metadata["cache"]["written_tokens"] == doc.tokens
    stats = usage.total
    # without caching, the same 20 prompts: the pin's creation tokens are not part of that baseline
    prompt_tokens = sum(r.usage_metadata["input_tokens"] for r in replies if r.usage_metadata) - doc.tokens
    baseline = usage.ledger.prices.cost(Usage(input_tokens=prompt_tokens), "gemini-2.5-flash", ("google",))
    assert baseline is not None and stats.cost_without_caching is not None
    outputs = sum((c.cost.output for c in usage.calls if c.cost), Decimal(0))
    assert stats.cost_without_caching == baseline.without_caching + outputs
    assert stats.storage_cost is not None and stats.storage_cost > 0  # one hour of storage
    assert stats.saved is not None and stats.saved > 0  # net of storage, 20 reads pay for it
    assert stats.cache_storage_token_hours == pytest.approx(doc.tokens * 1.0, rel=1e-3)


def test_tools_and_system_live_in_the_cache_never_next_to_it(emu: Emulator, clock: FakeClock) -> None:
    def lookup_section(number: int) -> str:
        """Return the text of a report section."""
        return DOC.splitlines()[number]

    llm = _llm(emu, clock, cache_mode="always").bind_tools([lookup_section])
    prompt = [SystemMessage(SYSTEM + "\n" + DOC), HumanMessage("Look up section 7.")]
    first = llm.invoke(prompt)
    assert isinstance(first, AIMessage) and first.tool_calls
    call = first.tool_calls[0]
    follow = [*prompt, first, {"role": "tool", "content": lookup_section(7), "tool_call_id": call["id"]}]
    final = llm.invoke(follow)
    assert isinstance(final, AIMessage) and final.usage_metadata
    assert final.usage_metadata["input_token_details"]["cache_read"] == gemini_cached(model_usages(emu)[-1]) > 1000
    _no_cached_request_carries_prefix_fields(emu)
    assert emu.counters.caches_created == 1


def test_a_cache_deleted_server_side_is_recreated_transparently(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    doc.invoke("Question one?")
    assert emu.delete_cached_content(doc.name)
    reply = doc.invoke("Question two?")  # no exception reaches the caller
    assert reply.usage_metadata
    assert reply.usage_metadata["input_token_details"]["cache_read"] == gemini_cached(model_usages(emu)[-1]) > 1000
    assert reply.response_metadata["cache"]["recovered"] is True
    assert emu.counters.caches_created == 2
    assert doc.invoke("Question three?").response_metadata["cache"]["recovered"] is False


def test_a_prefix_far_below_the_documented_minimum_is_never_tried(emu: Emulator, clock: FakeClock) -> None:
    """Google documents 2048 tokens for gemini-2.5 caches: a prefix of a few words is not worth a request."""
    llm = _llm(emu, clock, cache_mode="always")
    replies = [llm.invoke([("system", "Be brief."), ("human", f"Question {i}")]) for i in range(3)]
    assert all(r.content for r in replies)
    assert _creates(emu) == 0


def test_a_too_small_prefix_is_tried_once_then_sent_inline(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    # ~4.6 kB: by its size it could reach the documented minimum, but it is only ~420 emulator tokens
    small = "abcdefghij " * 420
    replies = [llm.invoke([("system", small), ("human", f"Question {i}")]) for i in range(5)]
    assert all(r.content for r in replies)
    assert _creates(emu) == 1 and emu.counters.caches_created == 0
    assert llm.cache_manager.registry.min_tokens(llm.cache_manager.namespace, "gemini-2.5-flash") == 1024
    # a different small prefix is not even tried now that the minimum is known
    llm.invoke([("system", "Be very brief."), ("human", "Q")])
    assert _creates(emu) == 1


def test_ten_concurrent_cold_calls_create_one_cache(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    prompts = [[("system", SYSTEM + "\n" + DOC), ("human", f"Question {i}?")] for i in range(10)]
    replies = llm.batch(prompts, config={"max_concurrency": 10})
    assert emu.counters.caches_created == 1 and _creates(emu) == 1
    assert all(isinstance(r, AIMessage) and r.usage_metadata for r in replies)


async def test_ten_concurrent_cold_async_calls_create_one_cache(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    prompts = [[("system", SYSTEM + "\n" + DOC), ("human", f"Question {i}?")] for i in range(10)]
    replies = await asyncio.gather(*(llm.ainvoke(p) for p in prompts))
    assert emu.counters.caches_created == 1 and _creates(emu) == 1
    reads = sorted(r.usage_metadata["input_token_details"]["cache_read"] for r in replies if r.usage_metadata)
    assert reads == sorted(gemini_cached(u) for u in model_usages(emu)) and reads[0] > 1000


async def test_stream_and_invoke_report_identical_usage(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    doc.invoke("warm up")  # takes the pin's one-time creation booking
    prompt = [*doc.messages, HumanMessage("What did unit 3 do?")]
    invoked = llm.invoke(prompt)
    streamed = _collect(llm.stream(prompt))
    full: BaseMessageChunk | None = None
    async for chunk in llm.astream(prompt):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    assert invoked.usage_metadata == streamed.usage_metadata == full.usage_metadata
    assert invoked.response_metadata["cache"] == streamed.response_metadata["cache"]


def test_a_cache_in_use_near_expiry_is_extended(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_ttl=600)
    doc = llm.cache_context(DOC, system=SYSTEM)
    first_expiry = doc.expire_time
    doc.invoke("first")
    clock.advance(500)  # within the last quarter of the TTL
    reply = doc.invoke("second")
    cache = reply.response_metadata["cache"]
    assert cache["extended"] is True and cache["storage_token_hours"] == pytest.approx(
        doc.tokens * 500 / 3600, rel=0.01
    )
    assert sum(1 for r in emu.requests if r.method == "PATCH") == 1
    clock.advance(100)
    assert doc.invoke("third").response_metadata["cache"]["extended"] is False
    assert emu.counters.caches_created == 1
    assert doc.expire_time > first_expiry  # the handle sees the extension the requests made


def test_an_unused_cache_expires_and_is_recreated_on_next_use(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_ttl=600, cache_mode="always")
    prompt = [("system", SYSTEM + "\n" + DOC), ("human", "Q?")]
    llm.invoke(prompt)
    clock.advance(700)  # nobody used it: it expired, no PATCH was spent on it
    assert llm.invoke(prompt).response_metadata["cache"]["created"] is True
    assert emu.counters.caches_created == 2 and not any(r.method == "PATCH" for r in emu.requests)


def test_auto_mode_creates_a_cache_once_it_pays_for_itself(emu: Emulator, clock: FakeClock) -> None:
    emu.gemini_rules = CacheRules(enabled=False)  # implicit caching not serving this prefix
    llm = _llm(emu, clock)  # gemini-2.5-flash: $0.30 input, $0.03 cached, $1.00 per MTok-hour storage
    created = []
    for i in range(7):
        reply = llm.invoke([("system", SYSTEM + "\n" + DOC), ("human", f"Q{i}?")])
        created.append(bool((reply.response_metadata.get("cache") or {}).get("created")))
    # (0.30 + 1.00 x 1 h) / (0.30 - 0.03) = 4.8: the fifth send within the hour creates the cache
    assert created == [False, False, False, False, True, False, False]
    assert emu.counters.caches_created == 1


def test_auto_mode_stays_inline_while_implicit_caching_serves_the_prefix(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock)
    prompt = [("system", SYSTEM + "\n" + DOC), ("human", "Q?")]
    reads = [llm.invoke(prompt).usage_metadata["input_token_details"]["cache_read"] for _ in range(8)]  # type: ignore[index]
    assert reads == [gemini_cached(u) for u in model_usages(emu)]  # as the server sent them
    assert all(r > 1000 for r in reads[1:]) and _creates(emu) == 0  # free implicit hits: no storage bought
    emu.gemini_rules = CacheRules(enabled=False)  # implicit caching stops serving it
    created = [bool((llm.invoke(prompt).response_metadata.get("cache") or {}).get("created")) for _ in range(2)]
    assert created == [False, True]  # one miss observed, then the break-even is already met
    assert emu.counters.caches_created == 1


def test_cache_mode_off_never_creates(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="off")
    for i in range(6):
        llm.invoke([("system", SYSTEM + "\n" + DOC), ("human", f"Q{i}?")])
    assert _creates(emu) == 0


def test_registry_is_shared_so_a_second_process_reuses_without_listing(
    emu: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "registry.sqlite3"
    one = _llm(emu, clock, cache_registry=SQLiteRegistry(path))
    doc = one.cache_context(DOC, system=SYSTEM)
    two = _llm(emu, clock, cache_registry=f"sqlite:///{path}")  # another process would open the same file
    reply = two.invoke([*doc.messages, HumanMessage("From the second worker?")])
    assert reply.response_metadata["cache"]["name"] == doc.name
    assert emu.counters.caches_created == 1
    assert not any(r.method == "GET" for r in emu.requests)  # warm path: no list, no get


def test_two_credentials_never_share_a_cache(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    path = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    a = _llm(emu, clock, cache_registry=path, api_key="key-of-team-a", cache_mode="always")
    b = _llm(emu, clock, cache_registry=path, api_key="key-of-team-b", cache_mode="always")
    prompt = [("system", SYSTEM + "\n" + DOC), ("human", "Q?")]
    name_a = a.invoke(prompt).response_metadata["cache"]["name"]
    name_b = b.invoke(prompt).response_metadata["cache"]["name"]
    assert name_a != name_b and emu.counters.caches_created == 2
    assert a.cache_manager.namespace != b.cache_manager.namespace


def test_cache_control_markers_make_cache_points(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    document = HumanMessage(content=[{"type": "text", "text": DOC, "cache_control": {"type": "ephemeral"}}])
    for q in ("Q1?", "Q2?"):
        reply = llm.invoke([SystemMessage(SYSTEM), document, HumanMessage(q)])
        assert reply.usage_metadata
        assert reply.usage_metadata["input_token_details"]["cache_read"] == gemini_cached(model_usages(emu)[-1]) > 1000
    cached = [r.body for r in emu.requests if r.body and "cachedContent" in r.body]
    assert all(len(body["contents"]) == 1 for body in cached)  # the document is not re-sent


def test_list_and_delete_the_caches_this_library_created(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    other = llm.cache_context(DOC + "\nAppendix.", system=SYSTEM)
    assert {c.name for c in llm.list_caches()} == {doc.name, other.name}
    doc.delete()
    assert {c.name for c in llm.list_caches()} == {other.name}
    assert llm.delete_caches() == 1 and llm.list_caches() == [] and emu.counters.caches_deleted == 2


def test_other_permission_errors_surface(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    body = {
        "error": {"code": 403, "message": "Permission denied on resource project demo.", "status": "PERMISSION_DENIED"}
    }
    emu.inject_fault(Fault(status=403, body=body, endpoint="gemini"), times=1)
    with pytest.raises(PermissionDeniedError) as info:
        llm.invoke("hello")
    assert info.value.code == "PERMISSION_DENIED" and "gemini-test-key" not in str(info.value)


def test_expiry_does_not_depend_on_clock_skew_between_client_and_provider(emu: Emulator, clock: FakeClock) -> None:
    llm = _llm(emu, clock, cache_mode="always")
    llm.cache_manager.clock = lambda: clock.time() + 10 * 86400  # our clock runs ten days ahead of Google's
    prompt = [("system", SYSTEM + "\n" + DOC), ("human", "Q?")]
    first = llm.invoke(prompt).response_metadata["cache"]
    second = llm.invoke(prompt).response_metadata["cache"]
    assert first["created"] is True and second["created"] is False and second["name"] == first["name"]
    assert emu.counters.caches_created == 1
