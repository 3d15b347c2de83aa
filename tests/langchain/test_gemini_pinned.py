"""Pinned contexts are chat models: `ChatGemini.cache_context` returns a `BaseChatModel` bound to one cache.

Everything runs against the emulator in-process on a fake clock: LCEL, create_agent, tools, structured
output, streams, batch, async creation, use after delete, recreate=, the context-manager protocol, mixed
content (text, paths, bytes, uploaded files), and a PDF whose cache is recreated (and the file uploaded
again) after 49 hours.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

from cache_integrations import ExplicitCachingUnsupportedError, InvalidRequestError, PinnedContextDeletedError
from cache_integrations.langchain import ChatGemini, PinnedContext, get_cache_usage_callback
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.testing import CacheRules, Emulator, FakeClock
from tests.media import samples

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
    emu = Emulator(clock=clock)
    emu.files.chunk_granularity = 1024
    return emu


def _no_sleep(_: float) -> None:
    return None


async def _ano_sleep(_: float) -> None:
    return None


def gemini(emu: Emulator, clock: FakeClock, **kwargs: Any) -> ChatGemini:
    transport = emu.transport()
    kwargs.setdefault("cache_registry", "memory")
    llm = ChatGemini(
        api_key="gemini-test-key",
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
    llm.cache_manager.clock = clock.time
    llm.files.sleep, llm.files.asleep = _no_sleep, _ano_sleep
    return llm


def cache_read(message: Any) -> int:
    assert isinstance(message, AIMessage) and message.usage_metadata is not None
    return int(message.usage_metadata["input_token_details"].get("cache_read", 0))


def server_tokens(llm: ChatGemini, name: str) -> int:
    """The cache's ``usageMetadata.totalTokenCount`` as Gemini reports it (cachedContents.get)."""
    provider = llm.cache_manager.client
    assert isinstance(provider, GeminiProvider)
    return provider.get_cached_content(name).total_token_count


def uploads(emu: Emulator) -> int:
    return emu.counters.files_uploaded


# -- langchain-tests' standard unit suite ------------------------------------------------------------


class TestPinnedContextUnit(ChatModelUnitTests):
    """Built directly (not by cache_context) a pinned context pins on first use, so it builds offline."""

    @property
    def chat_model_class(self) -> type[PinnedContext]:
        return PinnedContext

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gemini-2.5-flash",
            "api_key": "test-key",
            "content": DOC,
            "system": SYSTEM,
            "cache_registry": "memory",
        }


def test_a_directly_built_context_pins_on_first_use(emu: Emulator, clock: FakeClock) -> None:
    transport = emu.transport()
    doc = PinnedContext(
        api_key="k", base_url="http://emulator/v1beta", http_client=httpx.Client(transport=transport),
        cache_registry="memory", content=DOC, system=SYSTEM,
    )  # fmt: skip
    assert emu.requests == [] and not doc.session.pinned
    reply = doc.invoke("What did unit 3 do?")
    assert emu.counters.caches_created == 1 and cache_read(reply) == doc.tokens > 1000
    assert doc.name == doc.cache_name == reply.response_metadata["cache"]["name"]


# -- anywhere a chat model goes ----------------------------------------------------------------------


def test_a_pinned_context_is_a_chat_model_in_lcel_batch_and_streams(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert isinstance(doc, BaseChatModel) and isinstance(doc, ChatGemini)
    chain = ChatPromptTemplate.from_messages([("human", "About unit {n}: what happened?")]) | doc | StrOutputParser()
    answers = chain.batch([{"n": 1}, {"n": 2}, {"n": 3}])
    assert len(answers) == 3 and all(isinstance(a, str) and a for a in answers)
    streamed = list(doc.stream("Summarize section 7."))
    assert len(streamed) > 1
    final = streamed[0]
    for chunk in streamed[1:]:
        final = final + chunk  # type: ignore[assignment]
    assert cache_read(final) == doc.tokens

    async def run() -> list[Any]:
        chunks = [c async for c in doc.astream("Summarize section 8.")]
        return [*chunks, await doc.ainvoke("Section 9?"), *(await doc.abatch(["Section 10?", "Section 11?"]))]

    replies = asyncio.run(run())
    assert all(cache_read(r) == doc.tokens for r in replies[-3:])
    assert emu.counters.caches_created == 1, "every call above was served by the one pinned cache"
    generate = [r for r in emu.requests if "generateContent" in r.path or "streamGenerateContent" in r.path]
    assert all(r.body.get("cachedContent") == doc.cache_name for r in generate)
    assert all(len(r.body["contents"]) == 1 for r in generate), "only the question is sent"


def test_a_pinned_context_in_create_agent_with_its_tools(emu: Emulator, clock: FakeClock) -> None:
    @tool
    def lookup_section(number: int) -> str:
        """Return the text of a report section."""
        return DOC.splitlines()[number]

    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM, tools=[lookup_section])
    agent = create_agent(doc, tools=[lookup_section])
    result = agent.invoke({"messages": [HumanMessage("Look up section 7 and tell me what it says.")]})
    messages = result["messages"]
    assert any(isinstance(m, AIMessage) and m.tool_calls for m in messages), "the agent called the tool"
    assert isinstance(messages[-1], AIMessage) and messages[-1].content
    model_calls = [m for m in messages if isinstance(m, AIMessage)]
    assert len(model_calls) >= 2 and all(cache_read(m) == doc.tokens for m in model_calls)
    assert emu.counters.caches_created == 1, "the agent's tools are the pinned ones: the pinned cache serves them"


def test_tools_and_structured_output_bound_later_get_a_cache_of_their_own(emu: Emulator, clock: FakeClock) -> None:
    class Growth(BaseModel):
        unit: int
        percent: int

    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    pinned = doc.cache_name
    parsed = doc.with_structured_output(Growth).invoke("How much did unit 4 grow?")
    assert isinstance(parsed, Growth)
    reply = doc.bind_tools([Growth]).invoke("Report unit 5 as Growth.")
    assert isinstance(reply, AIMessage) and reply.tool_calls
    # Gemini caches tools with the content: the structured-output tool needs a second cache, which is
    # created (the context is pinned, whatever cache_mode says) and deleted with the context
    assert emu.counters.caches_created == 3
    assert doc.cache_name == doc.name == pinned, "the context still describes the cache of its own prefix"
    doc.delete()
    assert emu.counters.caches_alive == 0


# -- creation, deletion, recreation --------------------------------------------------------------------


def test_use_after_delete_is_a_clear_error(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    name = doc.cache_name
    doc.delete()
    sent = len(emu.requests)
    for call in (lambda: doc.invoke("Still there?"), lambda: list(doc.stream("Still there?"))):
        with pytest.raises(PinnedContextDeletedError, match=rf"{name} was deleted with delete\(\).*recreate=True"):
            call()
    with pytest.raises(PinnedContextDeletedError):
        asyncio.run(doc.ainvoke("Still there?"))
    assert len(emu.requests) == sent, "nothing was sent, in particular not the whole document inline"
    assert emu.counters.caches_alive == 0


def test_recreate_true_creates_the_cache_again_on_use(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM, recreate=True)
    doc.delete()
    reply = doc.invoke("Back again?")
    assert emu.counters.caches_created == 2 and emu.counters.caches_alive == 1
    assert reply.response_metadata["cache"]["created"] is True and cache_read(reply) == doc.tokens
    assert doc.name == reply.response_metadata["cache"]["name"] != doc.session.prefix.model


def test_the_context_manager_deletes_the_cache_on_exit(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    with llm.cache_context(DOC, system=SYSTEM) as doc:
        assert cache_read(doc.invoke("Unit 2?")) == doc.tokens
        assert emu.counters.caches_alive == 1
    assert emu.counters.caches_alive == 0 and doc.deleted

    async def run() -> None:
        async with await llm.acache_context(DOC + "\nAppendix.", system=SYSTEM) as other:
            assert cache_read(await other.ainvoke("Unit 3?")) == other.tokens

    asyncio.run(run())
    assert emu.counters.caches_created == 2 and emu.counters.caches_alive == 0


async def test_acache_context_creates_it_without_blocking(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = await llm.acache_context(DOC, system=SYSTEM)
    assert doc.created and emu.counters.caches_created == 1
    assert cache_read(await doc.ainvoke("Unit 6?")) == doc.tokens
    await doc.adelete()
    assert emu.counters.caches_alive == 0


def test_the_earlier_pinned_api_still_works(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert doc.name.startswith("cachedContents/") and doc.created and doc.tokens > 1000  # type: ignore[union-attr]
    assert doc.expire_time.timestamp() - clock.time() == pytest.approx(3600, abs=1)
    prefix = doc.messages
    assert prefix[-1].additional_kwargs["cache_control"] == {"type": "ephemeral"}
    # the prefix sent through the plain model finds the same cache
    assert cache_read(llm.invoke([*prefix, HumanMessage("Unit 8?")])) == doc.tokens
    clock.advance(600)
    before = doc.expire_time
    assert doc.refresh().expire_time > before and doc.expires_in > 3000
    assert emu.counters.caches_created == 1


# -- files in the pinned context ------------------------------------------------------------------------


def test_content_mixes_text_paths_bytes_and_uploaded_files(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    llm = gemini(emu, clock)
    plan = tmp_path / "flight_plan.pdf"
    plan.write_bytes(samples.pdf(12))
    video = llm.upload_file(samples.mp4(20.0), mime_type="video/mp4", display_name="launch")
    photo = samples.png(800, 600)
    doc = llm.cache_context(
        ["Mission documents follow.", plan, photo, video, {"type": "text", "text": "End of documents."}],
        system="You are a flight controller.",
    )
    create = next(r for r in emu.requests if r.method == "POST" and r.path == "/v1beta/cachedContents")
    parts = create.body["contents"][0]["parts"]
    assert [next(iter(p)) for p in parts] == ["text", "fileData", "fileData", "fileData", "text"]
    assert parts[3]["fileData"] == {"fileUri": video.uri, "mimeType": "video/mp4"}
    assert uploads(emu) == 3, "the video was uploaded once, by upload_file"
    assert doc.tokens == server_tokens(llm, doc.cache_name)
    doc.invoke("When is launch?")
    assert uploads(emu) == 3 and emu.counters.caches_created == 1
    blocks = doc.messages[1].content
    assert isinstance(blocks, list) and blocks[3] == {"type": "video", "mime_type": "video/mp4", "file_id": video.uri}


def test_content_that_cannot_be_cached_fails_before_sending(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    llm = gemini(emu, clock)
    with pytest.raises(InvalidRequestError, match=r"content\[1\]: cannot tell the media type of the bytes"):
        llm.cache_context(["text", b"\x00\x01\x02"])
    with pytest.raises(InvalidRequestError, match=r"content: expected text \(str\), a path"):
        llm.cache_context(42)
    with pytest.raises(InvalidRequestError, match=r"cannot read '.*missing\.pdf'"):
        llm.cache_context(tmp_path / "missing.pdf")
    assert emu.requests == []


def test_a_pinned_pdf_after_49_hours_is_uploaded_again_and_its_cache_recreated_once(
    emu: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    llm = gemini(emu, clock, cache_ttl=3600)
    plan = tmp_path / "a17_flight_plan.pdf"
    plan.write_bytes(samples.pdf(16))
    with get_cache_usage_callback() as usage:
        doc = llm.cache_context(plan, system="You are an expert at analyzing flight plans.")
        first = [doc.invoke(q) for q in ("When is launch?", "Who is the crew?")]
        clock.advance(49 * 3600)  # the file (48 h) and the cache (1 h) are both gone
        later = doc.invoke("When do they land?")
    assert (uploads(emu), emu.counters.caches_created) == (2, 2), "one re-upload, one re-creation"
    assert all(r.status == 200 for r in emu.requests), "the expiry was known from the registry, not from a 403"
    assert not [r for r in emu.requests if r.path.endswith(":countTokens")], "a pinned cache is made, not estimated"
    assert later.response_metadata["cache"]["created"] is True and cache_read(later) == doc.tokens
    assert all(cache_read(r) == doc.tokens for r in first)
    creates = [r for r in emu.requests if r.method == "POST" and r.path == "/v1beta/cachedContents"]
    uris = [c.body["contents"][0]["parts"][0]["fileData"]["fileUri"] for c in creates]
    assert len(set(uris)) == 2 and emu.files.get(uris[-1]) is not None and emu.files.get(uris[0]) is None
    # the cache's token count comes from the server, and the booked writes and storage use it
    assert server_tokens(llm, doc.cache_name) == doc.tokens >= 16 * 258
    assert first[0].response_metadata["cache"]["tokens"] == doc.tokens
    assert usage.total.cache_write_tokens == 2 * doc.tokens
    assert usage.total.cache_storage_token_hours == pytest.approx(2 * doc.tokens * 1.0)


def test_a_file_deleted_on_the_server_is_uploaded_again_when_the_cache_is_recreated(
    emu: Emulator, clock: FakeClock
) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(samples.pdf(12), system="Flight plan.")
    (name,) = emu.files.names()
    emu.files.delete(name)  # someone deleted the file...
    emu.delete_cached_content(doc.cache_name)  # ...and the cache is gone too
    reply = doc.invoke("When is launch?")
    assert cache_read(reply) == doc.tokens and reply.response_metadata["cache"]["created"] is True
    statuses = [(r.path, r.status) for r in emu.requests if r.path == "/v1beta/cachedContents"]
    assert statuses[-2:] == [("/v1beta/cachedContents", 403), ("/v1beta/cachedContents", 200)]
    assert (uploads(emu), emu.counters.caches_created) == (2, 2)


# -- models without explicit caching --------------------------------------------------------------------


def test_cache_context_on_a_model_without_explicit_caching_names_the_model_and_the_alternative(
    emu: Emulator, clock: FakeClock
) -> None:
    llm = gemini(emu, clock, model="gemini-4-argon")
    with pytest.raises(
        ExplicitCachingUnsupportedError, match=r"gemini-4-argon does not take explicit.*cache_mode='off'"
    ):
        llm.cache_context(DOC, system=SYSTEM)
    assert emu.requests == []


def test_auto_and_always_send_inline_with_one_warning(
    emu: Emulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for mode in ("auto", "always"):
        llm = gemini(emu, clock, model="gemini-4-argon", cache_mode=mode)
        with caplog.at_level(logging.WARNING, logger="cache_integrations"):
            replies = [llm.invoke([("system", SYSTEM + DOC), ("human", f"Q{i}")]) for i in range(6)]
        assert all(r.content for r in replies)
        warnings = [r for r in caplog.records if "gemini-4-argon does not take explicit caches" in r.getMessage()]
        assert len(warnings) == 1, mode
        caplog.clear()
    assert not [r for r in emu.requests if r.path == "/v1beta/cachedContents"]


def test_a_model_gemini_refuses_caches_for_is_remembered_and_the_call_succeeds(
    emu: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    emu.gemini_models_without_explicit_cache.add("gemini-2.5-flash-lite")
    registry = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    llm = gemini(emu, clock, model="gemini-2.5-flash-lite", cache_mode="always", cache_registry=registry)
    replies = [llm.invoke([("system", SYSTEM + DOC), ("human", f"Q{i}")]) for i in range(3)]
    assert all(r.content for r in replies)
    refused = [r for r in emu.requests if r.path == "/v1beta/cachedContents"]
    assert [r.status for r in refused] == [404], "tried once"
    # another process sharing the registry knows it without asking
    other = gemini(emu, clock, model="gemini-2.5-flash-lite", cache_mode="always", cache_registry=registry)
    other.invoke([("system", SYSTEM + DOC), ("human", "Q")])
    with pytest.raises(ExplicitCachingUnsupportedError, match="Gemini refused to create one"):
        other.cache_context(DOC, system=SYSTEM)
    assert len([r for r in emu.requests if r.path == "/v1beta/cachedContents"]) == 1


# -- auto mode over media: the break-even rule with countTokens ------------------------------------------


def test_auto_mode_caches_a_long_pdf_prefix_at_break_even_counting_it_with_count_tokens(
    emu: Emulator, clock: FakeClock
) -> None:
    llm = gemini(emu, clock, file_upload_threshold=0)
    pdf = base64.b64encode(samples.pdf(12)).decode()
    prefix = HumanMessage(
        content=[{"type": "file", "base64": pdf, "mime_type": "application/pdf"}],
        additional_kwargs={"cache_control": {"type": "ephemeral"}},
    )
    emu.gemini_rules = CacheRules(enabled=False)  # implicit caching misses: only an explicit cache pays
    replies = [llm.invoke([("system", "Flight plan analyst."), prefix, HumanMessage(f"Q{i}")]) for i in range(6)]
    counts = [r for r in emu.requests if r.path.endswith(":countTokens")]
    assert len(counts) == 1, "the media prefix was counted once, then remembered"
    assert emu.counters.caches_created == 1 and uploads(emu) == 1
    sends = llm.cache_manager._breakeven_sends("gemini-2.5-flash")
    assert [cache_read(r) > 0 for r in replies] == [i + 1 >= sends for i in range(6)]
