"""Explicit caches when Gemini misbehaves: failed extensions, creations whose answer is lost, caches
deleted under a stream or an async call, and other people's caches next to ours."""

from __future__ import annotations

import logging

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessageChunk, HumanMessage, SystemMessage

from cache_integrations import ProviderConnectionError
from cache_integrations.llama_index import Gemini
from cache_integrations.testing import CacheRules, Emulator, FakeClock
from cache_integrations.testing.faults import gemini_internal

from ._support import (
    API_KEY,
    BASE_URL,
    DOC,
    SYSTEM,
    LoseCreationAnswers,
    chat_gemini,
    create_foreign_cache,
    prompt,
    requests_to,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


def _cache_read(message: AIMessage) -> int:
    assert message.usage_metadata is not None
    return int(message.usage_metadata.get("input_token_details", {}).get("cache_read", 0))


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# -- 1. a failed extension of a cache that is still valid ----------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_failed_extension_of_a_valid_cache_is_logged_and_retried_later(
    path: str, emu: Emulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    llm = chat_gemini(emu, clock, cache_ttl=600, max_retries=0)
    doc = llm.cache_context(DOC, system=SYSTEM)

    async def ask(question: str) -> AIMessage:
        messages = [*doc.messages, HumanMessage(question)]
        return await llm.ainvoke(messages) if path == "async" else llm.invoke(messages)

    await ask("first")
    clock.advance(500)  # 100 s left: within the last quarter of the TTL, so the next call extends
    emu.inject_fault(gemini_internal(), method="PATCH", times=1)
    caplog.set_level(logging.WARNING)
    reply = await ask("second")  # the PATCH fails: the call is still served from the valid cache
    cache = reply.response_metadata["cache"]
    assert cache["name"] == doc.name and cache["extended"] is False and _cache_read(reply) > 1000
    warnings = _warnings(caplog, "could not extend cache")
    assert len(warnings) == 1 and doc.name in warnings[0] and "\n" not in warnings[0]
    assert API_KEY not in caplog.text
    clock.advance(10)
    assert (await ask("third")).response_metadata["cache"]["extended"] is False  # not retried on every call
    assert requests_to(emu, "PATCH", "") == 1
    clock.advance(25)  # the retry interval has passed and the cache is still valid
    assert (await ask("fourth")).response_metadata["cache"]["extended"] is True
    assert requests_to(emu, "PATCH", "") == 2 and emu.counters.caches_created == 1


def test_an_extension_that_cannot_reach_gemini_does_not_fail_the_call(emu: Emulator, clock: FakeClock) -> None:
    class RefusePatch(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = emu.transport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "PATCH":
                raise httpx.ConnectError("connection refused", request=request)
            return self.inner.handle_request(request)

    llm = chat_gemini(emu, clock, transport=RefusePatch(), cache_ttl=600, max_retries=0)
    doc = llm.cache_context(DOC, system=SYSTEM)
    clock.advance(500)
    reply = doc.invoke("Still there?")
    assert reply.response_metadata["cache"]["name"] == doc.name and _cache_read(reply) > 1000


# -- 2. a creation whose answer was lost ----------------------------------------------------------------


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.RemoteProtocolError])
@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_creation_whose_answer_was_lost_is_found_not_duplicated(
    path: str, error: type[httpx.TransportError], emu: Emulator, clock: FakeClock
) -> None:
    llm = chat_gemini(emu, clock, transport=LoseCreationAnswers(emu, error), cache_mode="always")
    ask = llm.ainvoke if path == "async" else None
    reply = await ask(prompt()) if ask else llm.invoke(prompt())
    assert emu.counters.caches_created == 1 and len(emu.cached_content_names()) == 1
    cache = reply.response_metadata["cache"]
    assert cache["name"] == emu.cached_content_names()[0] and cache["created"] is True and _cache_read(reply) > 1000
    assert requests_to(emu, "GET") == 1  # one lookup by display name, no second POST
    again = await ask(prompt()) if ask else llm.invoke(prompt())
    assert again.response_metadata["cache"]["name"] == cache["name"] and emu.counters.caches_created == 1


def test_a_pinned_context_whose_answer_was_lost_is_found(emu: Emulator, clock: FakeClock) -> None:
    llm = chat_gemini(emu, clock, transport=LoseCreationAnswers(emu, httpx.ReadTimeout))
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert emu.cached_content_names() == [doc.name] and doc.created is True
    assert _cache_read(doc.invoke("Q?")) > 1000 and emu.counters.caches_created == 1


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_creation_refused_with_a_5xx_is_looked_up_then_sent_again(
    path: str, emu: Emulator, clock: FakeClock
) -> None:
    llm = chat_gemini(emu, clock, cache_mode="always")
    emu.inject_fault(gemini_internal(), method="POST", path_prefix="/v1beta/cachedContents", times=1)
    reply = await llm.ainvoke(prompt()) if path == "async" else llm.invoke(prompt())
    assert reply.response_metadata["cache"]["created"] is True and _cache_read(reply) > 1000
    assert requests_to(emu, "POST") == 2 and requests_to(emu, "GET") == 1 and emu.counters.caches_created == 1


def test_an_unverifiable_creation_is_never_repeated_blindly(emu: Emulator, clock: FakeClock) -> None:
    lose = LoseCreationAnswers(emu, httpx.ReadTimeout)
    llm = chat_gemini(emu, clock, transport=lose, cache_mode="always", max_retries=0)
    emu.inject_fault(gemini_internal(), method="GET", path_prefix="/v1beta/cachedContents", times=1)
    with pytest.raises(ProviderConnectionError) as info:  # a pinned context must exist: the caller learns
        llm.cache_context(DOC, system=SYSTEM)
    assert info.value.maybe_sent and emu.counters.caches_created == 1 and requests_to(emu, "POST") == 1
    # the next call with that prefix looks before it creates, and finds the cache the lost POST made
    marked = HumanMessage(DOC, additional_kwargs={"cache_control": {"type": "ephemeral"}})
    reply = llm.invoke([SystemMessage(SYSTEM), marked, HumanMessage("Q?")])
    assert reply.response_metadata["cache"]["name"] == emu.cached_content_names()[0] and _cache_read(reply) > 1000
    assert emu.counters.caches_created == 1 and requests_to(emu, "POST") == 1


def test_a_lost_creation_in_auto_mode_goes_inline_and_is_looked_up_next_time(emu: Emulator, clock: FakeClock) -> None:
    llm = chat_gemini(emu, clock, transport=LoseCreationAnswers(emu, httpx.ReadTimeout), max_retries=0)
    emu.gemini_rules = CacheRules(enabled=False)  # no implicit caching: auto creates at the fifth send
    emu.inject_fault(gemini_internal(), method="GET", path_prefix="/v1beta/cachedContents", times=1)
    replies = [llm.invoke(prompt()) for _ in range(6)]
    assert all(r.content for r in replies)  # the unverifiable creation (fifth send) went inline
    assert "cache" not in replies[4].response_metadata
    assert emu.counters.caches_created == 1 and requests_to(emu, "POST") == 1
    assert replies[5].response_metadata["cache"]["name"] == emu.cached_content_names()[0]


# -- 9a. a cache deleted server-side, on every path -----------------------------------------------------


def _collect(chunks: list[BaseMessageChunk]) -> AIMessage:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert isinstance(full, AIMessage)
    return full


@pytest.mark.parametrize("path", ["stream", "astream", "ainvoke"])
async def test_a_cache_deleted_server_side_is_recreated_on_every_path(
    path: str, emu: Emulator, clock: FakeClock
) -> None:
    llm = chat_gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    doc.invoke("warm up")
    assert emu.delete_cached_content(doc.name)
    messages = [*doc.messages, HumanMessage("Question two?")]
    if path == "stream":
        reply = _collect(list(llm.stream(messages)))
    elif path == "astream":
        reply = _collect([chunk async for chunk in llm.astream(messages)])
    else:
        reply = await llm.ainvoke(messages)
    cache = reply.response_metadata["cache"]
    assert cache["recovered"] is True and cache["name"] != doc.name and _cache_read(reply) > 1000
    assert emu.counters.caches_created == 2 and emu.cached_content_names() == [cache["name"]]


# -- 9b. other people's caches ----------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_list_and_delete_leave_other_peoples_caches_alone(adapter: str, emu: Emulator, clock: FakeClock) -> None:
    foreign = {
        create_foreign_cache(emu, "team-b-report"),
        create_foreign_cache(emu, None),
        create_foreign_cache(emu, "cache-integrations-lookalike"),
        create_foreign_cache(emu, "cache-integrations:not-one-of-ours"),
    }
    if adapter == "langchain":
        llm: Gemini | object = chat_gemini(emu, clock)
    else:
        transport = emu.transport()
        llm = Gemini(
            api_key=API_KEY, base_url=BASE_URL, cache_registry="memory",
            http_client=httpx.Client(transport=transport), http_async_client=httpx.AsyncClient(transport=transport),
        )  # fmt: skip
    ours = {llm.cache_context(DOC + "\nOurs.", system=SYSTEM).name}  # type: ignore[attr-defined]
    ours.add(llm.cache_context(DOC + "\nOurs too.", system=SYSTEM).name)  # type: ignore[attr-defined]
    assert {c.name for c in llm.list_caches()} == ours  # type: ignore[attr-defined]
    assert llm.delete_caches() == 2  # type: ignore[attr-defined]
    assert set(emu.cached_content_names()) == foreign


def test_our_caches_carry_the_display_name_the_filter_expects(emu: Emulator, clock: FakeClock) -> None:
    llm = chat_gemini(emu, clock)
    ours = llm.cache_context(DOC, system=SYSTEM)
    resource = next(c for c in llm.list_caches() if c.name == ours.name)
    assert resource.display_name == f"cache-integrations:{ours.handle.key[:40]}"
