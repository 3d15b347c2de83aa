"""Gemini's explicit caches through LlamaIndex: CachePoint as the boundary, pinned contexts, signatures."""

from __future__ import annotations

import asyncio
import json

import pytest
from llama_index.core.base.llms.types import CacheControl, CachePoint, ChatMessage, ChatResponse, TextBlock
from llama_index.core.tools import FunctionTool

from cache_integrations.llama_index import CacheUsageHandler
from cache_integrations.llama_index._convert import (
    StreamAccumulator,
    chat_response_from_core,
    messages_from_llama_index,
)
from cache_integrations.messages import ChatRequest
from cache_integrations.providers.gemini import StreamParser, encode_generate, parse_response
from cache_integrations.testing import Emulator, FakeClock

from ..wire import created_caches, gemini_cached, model_usages
from .conftest import make_gemini

DOC = "\n".join(
    f"Section {i}: unit {i} grew revenue by {i * 3} percent; the audit committee reviewed contract {1000 + i}."
    for i in range(250)
)
SYSTEM = "Answer strictly from the annual report. Quote section numbers."


def _generate_requests(emu: Emulator) -> list[dict[str, object]]:
    return [r.body for r in emu.requests if ":generateContent" in r.path or ":streamGenerateContent" in r.path]


def _no_cached_request_carries_prefix_fields(emu: Emulator) -> None:
    cached = [b for b in _generate_requests(emu) if "cachedContent" in b]
    assert cached, "no request used a cache"
    for body in cached:
        assert not {"systemInstruction", "tools", "toolConfig"} & set(body), body


def _conversation(question: str, *, marker: str = "block") -> list[ChatMessage]:
    if marker == "block":
        doc = ChatMessage(
            role="user", blocks=[TextBlock(text=DOC), CachePoint(cache_control=CacheControl(type="ephemeral"))]
        )
    else:
        doc = ChatMessage(role="user", content=DOC, additional_kwargs={"cache_control": {"type": "ephemeral"}})
    return [
        ChatMessage(role="system", content=SYSTEM),
        doc,
        ChatMessage(role="assistant", content="I have read the report."),
        ChatMessage(role="user", content=question),
    ]


def test_a_cache_point_is_the_explicit_cache_boundary(
    emu: Emulator, clock: FakeClock, usage: CacheUsageHandler
) -> None:
    llm = make_gemini(emu, clock, cache_mode="always")
    first = llm.chat(_conversation("What did unit 3 do?"))
    second = llm.chat(_conversation("And unit 4?", marker="cache_control"))  # same boundary, other spelling
    assert emu.counters.caches_created == 1
    cache = first.raw["cache"]
    (resource_tokens,) = created_caches(emu)  # the resource's totalTokenCount as the server sent it
    assert cache["created"] is True and cache["written_tokens"] == cache["tokens"] == resource_tokens > 1000
    assert first.raw["usage"]["cache_creation_input_tokens"] == resource_tokens
    assert second.raw["cache"]["name"] == cache["name"] and second.raw["cache"]["created"] is False
    sent = model_usages(emu)
    assert second.raw["usage"]["prompt_tokens_details"]["cached_tokens"] == gemini_cached(sent[1]) == resource_tokens
    # the cached turns are not re-sent: only the turns after the cache point travel
    for body in _generate_requests(emu):
        assert DOC[:200] not in json.dumps(body)
        assert [c["role"] for c in body["contents"]] == ["model", "user"]  # type: ignore[index]
    _no_cached_request_carries_prefix_fields(emu)
    # the handler books the creation and an hour of storage, so "saved" is net of it
    stats = usage.total
    assert stats.calls == 2 and stats.cache_write_tokens == cache["tokens"]
    assert stats.cache_storage_token_hours == pytest.approx(cache["tokens"] * 1.0, rel=1e-3)
    assert stats.storage_cost is not None and stats.storage_cost > 0


def test_stream_and_chat_report_the_same_cache_use(emu: Emulator, clock: FakeClock) -> None:
    llm = make_gemini(emu, clock, cache_mode="always")
    llm.chat(_conversation("warm up"))  # takes the one-time creation booking
    invoked = llm.chat(_conversation("What did unit 3 do?"))
    *_, streamed = llm.stream_chat(_conversation("What did unit 3 do?"))

    async def astream() -> ChatResponse:
        return [c async for c in await llm.astream_chat(_conversation("What did unit 3 do?"))][-1]

    astreamed = asyncio.run(astream())
    for final in (streamed, astreamed):
        assert final.raw["usage"] == invoked.raw["usage"]
        assert final.raw["cache"] == invoked.raw["cache"]
        assert final.message.blocks == invoked.message.blocks
    _no_cached_request_carries_prefix_fields(emu)


def test_pinned_context_serves_every_question_from_one_cache(
    emu: Emulator, clock: FakeClock, usage: CacheUsageHandler
) -> None:
    llm = make_gemini(emu, clock)
    doc = llm.cache_context(DOC, system=SYSTEM)
    assert doc.name.startswith("cachedContents/") and doc.created
    assert [doc.tokens] == created_caches(emu) and doc.tokens > 1000  # as the server reported the resource
    assert doc.expire_time.timestamp() - clock.time() == pytest.approx(3600, abs=1)
    assert isinstance(doc.messages[-1].blocks[-1], CachePoint)
    assert doc.messages[0].role == "system"
    replies = [doc.chat(f"What happened to unit {i}?") for i in range(5)]
    replies.append(asyncio.run(doc.achat("And unit 9?")))
    assert emu.counters.caches_created == 1
    assert [r.raw["usage"]["cache_read_input_tokens"] for r in replies] == [gemini_cached(u) for u in model_usages(emu)]
    assert all(gemini_cached(u) == doc.tokens for u in model_usages(emu))
    assert replies[0].raw["cache"]["written_tokens"] == doc.tokens  # the pin is booked on first use
    assert all(r.raw["cache"]["written_tokens"] == 0 for r in replies[1:])
    _no_cached_request_carries_prefix_fields(emu)
    assert usage.total.cache_read_tokens == 6 * doc.tokens
    before = doc.expire_time
    clock.advance(600)
    assert doc.refresh().expire_time > before
    assert [c.name for c in llm.list_caches()] == [doc.name]
    doc.delete()
    assert llm.list_caches() == []


def test_pinned_messages_and_tools(emu: Emulator, clock: FakeClock) -> None:
    def lookup_section(number: int) -> str:
        """Return the text of a report section."""
        return DOC.splitlines()[number]

    llm = make_gemini(emu, clock)
    history = [ChatMessage(role="user", content=DOC), ChatMessage(role="assistant", content="Read.")]
    before = [m.model_dump() for m in history]
    doc = llm.cache_context(history, system=SYSTEM, tools=[FunctionTool.from_defaults(lookup_section)])
    assert [m.model_dump() for m in history] == before  # the caller's messages keep no CachePoint
    assert isinstance(doc.messages[-1].blocks[-1], CachePoint) and len(doc.messages) == 3
    reply = doc.chat("Look up section 7.")
    calls = llm.get_tool_calls_from_response(reply)
    assert calls and calls[0].tool_name == "lookup_section"
    follow = ChatMessage(role="tool", content=lookup_section(7), additional_kwargs={"tool_call_id": calls[0].tool_id})
    final = llm.chat(
        [*doc.messages, ChatMessage(role="user", content="Look up section 7."), reply.message, follow], tools=doc.tools
    )
    assert final.raw["usage"]["cache_read_input_tokens"] == gemini_cached(model_usages(emu)[-1]) == doc.tokens
    assert emu.counters.caches_created == 1
    _no_cached_request_carries_prefix_fields(emu)
    assert llm.delete_caches() == 1


RESPONSE = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "c2lnLTE="}],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
    "modelVersion": "gemini-3.5-flash",
    "responseId": "resp-1",
}


def _replayed_part(reply: ChatResponse) -> dict[str, object]:
    (call_id,) = reply.message.additional_kwargs["tool_call_signatures"]
    history = [
        ChatMessage(role="user", content="find x"),
        reply.message,
        ChatMessage(role="tool", content="found", additional_kwargs={"tool_call_id": call_id}),
        ChatMessage(role="user", content="thanks"),
    ]
    body = json.loads(
        encode_generate(ChatRequest("gemini-3.5-flash", messages_from_llama_index(history)), stream=False).body
    )
    part: dict[str, object] = body["contents"][1]["parts"][0]
    return part


def test_thought_signatures_survive_the_history_from_chat_and_stream() -> None:
    expected = {"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "c2lnLTE="}
    assert _replayed_part(chat_response_from_core(parse_response(RESPONSE), "google")) == expected
    parser = StreamParser()
    acc = StreamAccumulator()
    chunk = parser.feed(json.dumps(RESPONSE))
    assert chunk is not None
    acc.add(chunk)
    streamed = chat_response_from_core(acc.response(parser.finish()), "google")
    assert _replayed_part(streamed) == expected
    assert "tool_call_signatures" not in streamed.additional_kwargs
