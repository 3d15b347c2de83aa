"""LlamaIndex: `Gemini.cache_context` returns an LLM bound to the cache; files as managed resources.

Against the emulator in-process on a fake clock: chat with a string or messages, stream, async, tools,
a FunctionAgent, a DocumentBlock chat over a cached PDF, use after delete, recreate=, the context-manager
protocol, upload_file / list_files / delete_files, and a PDF whose file and cache are renewed after 49 h.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import CachePoint, ChatMessage, DocumentBlock, TextBlock
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool

from cache_integrations import ExplicitCachingUnsupportedError, PinnedContextDeletedError
from cache_integrations.llama_index import CacheUsageHandler, Gemini, PinnedContext
from cache_integrations.testing import Emulator, FakeClock
from tests.llama_index.conftest import make_gemini
from tests.media import samples

DOC = "\n".join(
    f"Section {i}: unit {i} grew revenue by {i * 3} percent; the audit committee reviewed contract {1000 + i}."
    for i in range(250)
)
SYSTEM = "Answer strictly from the annual report. Quote section numbers."


def _no_sleep(_: float) -> None:
    return None


async def _ano_sleep(_: float) -> None:
    return None


def gemini(emu: Emulator, clock: FakeClock, **kwargs: Any) -> Gemini:
    emu.files.chunk_granularity = 1024
    llm = make_gemini(emu, clock, **kwargs)
    llm.files.sleep, llm.files.asleep = _no_sleep, _ano_sleep
    return llm


def cached(response: Any) -> int:
    return int(response.raw["usage"]["prompt_tokens_details"]["cached_tokens"])


def test_a_pinned_context_is_an_llm_that_takes_a_question(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert isinstance(doc, FunctionCallingLLM) and isinstance(doc, PinnedContext)
    replies = [
        doc.chat("Unit 1?"),
        doc.chat(ChatMessage(role="user", content="Unit 2?")),
        doc.chat([ChatMessage(role="user", content="Unit 3?")]),
        doc.complete("Unit 4?"),
    ]
    streamed = list(doc.stream_chat("Unit 5?"))

    async def run() -> list[Any]:
        gen = await doc.astream_chat("Unit 7?")
        chunks = [c async for c in gen]
        return [await doc.achat("Unit 6?"), chunks[-1], await doc.acomplete("Unit 8?")]

    replies += [streamed[-1], *asyncio.run(run())]
    assert all(cached(r) == doc.tokens for r in replies)
    assert emu.counters.caches_created == 1 and doc.name.startswith("cachedContents/")
    generate = [r for r in emu.requests if "enerateContent" in r.path]
    assert all(r.body.get("cachedContent") == doc.name and len(r.body["contents"]) == 1 for r in generate)


def test_a_function_agent_runs_on_a_pinned_context_with_its_tools(emu: Emulator, clock: FakeClock) -> None:
    def lookup_section(number: int) -> str:
        """Return the text of a report section."""
        return DOC.splitlines()[number]

    tool = FunctionTool.from_defaults(lookup_section)
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM, tools=[tool])
    agent = FunctionAgent(tools=[tool], llm=doc)

    async def run() -> str:
        return str(await agent.run("Look up section 7."))

    assert asyncio.run(run())
    generate = [r for r in emu.requests if "enerateContent" in r.path]
    assert len(generate) >= 2 and all(r.body.get("cachedContent") == doc.name for r in generate)
    assert any("functionResponse" in p for r in generate for c in r.body["contents"] for p in c["parts"])
    assert emu.counters.caches_created == 1


def test_a_document_block_chat_over_a_cached_pdf(emu: Emulator, clock: FakeClock, usage: CacheUsageHandler) -> None:
    llm = gemini(emu, clock)
    flight_plan = DocumentBlock(data=samples.pdf(16), title="A17 flight plan", document_mimetype="application/pdf")
    with llm.cache_context(
        [ChatMessage(role="user", blocks=[flight_plan, TextBlock(text="This is the flight plan.")])],
        system="You are an expert at analyzing transcripts.",
    ) as doc:
        history: list[ChatMessage] = []
        for question in ("When is launch?", "Who flies?", "When do they land?"):
            history.append(ChatMessage(role="user", content=question))
            reply = doc.chat(history)
            history.append(reply.message)
            assert cached(reply) == doc.tokens >= 16 * 258
    assert emu.counters.files_uploaded == 1 and emu.counters.caches_created == 1 and emu.counters.caches_alive == 0
    create = next(r for r in emu.requests if r.method == "POST" and r.path == "/v1beta/cachedContents")
    assert "fileData" in create.body["contents"][0]["parts"][0]
    assert usage.total.cache_read_tokens == 3 * doc.tokens


def test_the_earlier_pinned_api_still_works(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert isinstance(doc.messages[-1].blocks[-1], CachePoint) and doc.messages[0].role == "system"
    assert doc.llm is doc and doc.tools == [] and doc.created
    reply = llm.chat([*doc.messages, ChatMessage(role="user", content="Unit 9?")])
    assert cached(reply) == doc.tokens and emu.counters.caches_created == 1
    clock.advance(600)
    before = doc.expire_time
    assert doc.refresh().expire_time > before


def test_use_after_delete_raises_unless_recreate(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    name = doc.name
    doc.delete()
    sent = len(emu.requests)
    with pytest.raises(PinnedContextDeletedError, match=name):
        doc.chat("Anyone?")
    with pytest.raises(PinnedContextDeletedError):
        doc.stream_chat("Anyone?")
    assert len(emu.requests) == sent
    again = llm.cache_context(DOC, system=SYSTEM, recreate=True)
    again.delete()
    assert cached(again.chat("Back?")) == again.tokens and emu.counters.caches_alive == 1


async def test_acache_context_and_the_async_context_manager(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    async with await llm.acache_context(DOC, system=SYSTEM) as doc:
        assert cached(await doc.achat("Unit 4?")) == doc.tokens
    assert emu.counters.caches_alive == 0 and doc.deleted


def test_files_upload_once_and_list_and_delete_only_ours(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    llm = gemini(emu, clock)
    path = tmp_path / "report.pdf"
    path.write_bytes(samples.pdf(4))
    handle = llm.upload_file(path)
    assert llm.upload_file(str(path)).name == handle.name and emu.counters.files_uploaded == 1
    foreign = llm.files.upload(b"not ours", mime_type="text/plain", display_name="notes")
    assert [f.name for f in llm.list_files()] == [handle.name]
    assert llm.delete_files() == 1 and emu.files.names() == [foreign.name]


def test_a_pinned_pdf_is_renewed_after_49_hours(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    llm = gemini(emu, clock)
    path = tmp_path / "plan.pdf"
    path.write_bytes(samples.pdf(12))
    doc = llm.cache_context(path, system="Flight plan analyst.")
    doc.chat("Launch?")
    clock.advance(49 * 3600)
    reply = doc.chat("Landing?")
    assert cached(reply) == doc.tokens and (emu.counters.files_uploaded, emu.counters.caches_created) == (2, 2)


def test_cache_context_on_gemini_4_is_a_clear_error(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, model="gemini-4-argon")
    with pytest.raises(ExplicitCachingUnsupportedError, match="gemini-4-argon"):
        llm.cache_context(DOC, system=SYSTEM)
    assert emu.requests == []
