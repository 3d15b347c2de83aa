"""A corpus of conversations and what the library made of them: bytes on the wire and miss diagnoses.

`golden()` runs every conversation of the corpus, step by step as an application sends it (the history grows,
then is edited in the middle, truncated, re-timestamped, its tools reordered, a message mutated in place), through
the encoders (GLM, Gemini generate, Gemini cache payload and create body), through ChatGLM and ChatGemini on the
emulator with the cache usage handler attached, and through the LlamaIndex GLM LLM, and returns a SHA-256 of every
request body, fingerprint chain and diagnosis. ``tests/core/data/hotpath_golden.json`` holds what the code without
the hot-path work (issue 15) produced: first recorded on commit 5c2459e, recorded again on main c504af8 when main
was merged into the branch (main's own Gemini explicit-cache changes moved six ChatGemini requests; the branch's
merged code produced exactly main's output). To regenerate it, run ``python -m tests.core.hotpath_corpus --write``
on code without the hot-path changes. `test_hotpath_wire` checks the current code produces the same, with the memos
cold and warm.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.errors import InvalidRequestError
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGemini, ChatGLM
from cache_integrations.langchain._convert import messages_from_langchain, tool_from_langchain
from cache_integrations.llama_index import GLM, CacheUsageHandler
from cache_integrations.llama_index._convert import messages_from_llama_index
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers.gemini import cache_payload, encode_cache_create, encode_generate
from cache_integrations.providers.glm import encode_request
from cache_integrations.testing import Emulator
from cache_integrations.testing.clock import FakeClock
from cache_integrations.usage import Usage

GOLDEN = Path(__file__).parent / "data" / "hotpath_golden.json"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
PDF = base64.b64encode(b"%PDF-1.4\n" + b"0" * 200 + b"\n%%EOF").decode()

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search_tickets",
            "description": "Search support tickets by free text.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 5}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_invoice",
            "description": "Fetch an invoice by customer and month (YYYY-MM).",
            "parameters": {
                "type": "object",
                "properties": {"customer": {"type": "string"}, "month": {"type": "string"}},
                "required": ["customer", "month"],
            },
        },
    },
]


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()[:32]


# -- conversations (LangChain messages), each a list of steps -------------------------------------------


def _chat(n: int = 24) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage("You are Acme's support assistant. Today is 2026-11-30 09:15:02Z.")]
    for i in range(n):
        if i % 2 == 0:
            out.append(
                HumanMessage(
                    f"Q{i}: ticket {1000 + i} (request id req_{i:012x}) from 2026-11-{1 + i % 28:02d}: "
                    "what is the refund window? Überprüfung ✓",
                    name="dana" if i % 4 == 0 else None,
                )
            )
        else:
            out.append(AIMessage(f"A{i}: refunds take {i} days; session 3f2a9c1e-0b4d-4e5f-9a6b-7c8d9e0f1a2b."))
    return out


def _agent() -> list[BaseMessage]:
    return [
        SystemMessage("You are an operations agent; use the tools."),
        HumanMessage("Find Dana's tickets and her invoice for 2026-10."),
        AIMessage(
            "",
            additional_kwargs={"reasoning_content": "two tools, in parallel"},
            tool_calls=[
                {"name": "search_tickets", "args": {"query": "Dana", "limit": 3}, "id": "call_a", "type": "tool_call"},
                {
                    "name": "get_invoice",
                    "args": {"month": "2026-10", "customer": "Dana", "filters": {"paid": False, "tags": ["x", "é"]}},
                    "id": "call_b",
                    "type": "tool_call",
                },
            ],
        ),
        ToolMessage('{"tickets": [1, 2, 3], "total": 3}', tool_call_id="call_a"),
        ToolMessage("Invoice INV-2026-10: 42.00 EUR, unpaid", tool_call_id="call_b"),
        AIMessage(
            "Dana has 3 tickets and one unpaid invoice.",
            tool_calls=[],
            invalid_tool_calls=[
                {
                    "name": "search_tickets",
                    "args": "{bad json",
                    "id": "call_c",
                    "error": "bad",
                    "type": "invalid_tool_call",
                }
            ],
        ),
        HumanMessage("Thanks. Anything else open?"),
    ]


def _media() -> list[BaseMessage]:
    return [
        SystemMessage("Describe what you are shown."),
        HumanMessage(
            content=[
                {"type": "text", "text": "Here is the chart:"},
                {"type": "image", "base64": PNG, "mime_type": "image/png"},
                {"type": "text", "text": "and the spec", "cache_control": {"type": "ephemeral"}},
            ]
        ),
        AIMessage("A bar chart with 8 bars."),
        HumanMessage(
            content=[
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                {"type": "text", "text": "What changed?"},
            ]
        ),
    ]


def _gemini_media() -> list[BaseMessage]:
    return [
        SystemMessage("Answer from the attached documents."),
        HumanMessage(
            content=[
                {"type": "file", "base64": PDF, "mime_type": "application/pdf", "filename": "spec.pdf"},
                {"type": "text", "text": "Summarize section 2."},
            ],
            additional_kwargs={"cache_control": {"type": "ephemeral"}},
        ),
        AIMessage("Section 2 covers refunds."),
        HumanMessage(content=[{"type": "image", "base64": PNG, "mime_type": "image/png"}, "And this image?"]),
    ]


def _steps(base: list[BaseMessage]) -> Iterator[tuple[str, list[BaseMessage], list[dict[str, Any]]]]:
    """The conversation as an application sends it over time, then the ways applications break prefixes."""
    for k in range(2, len(base) + 1):
        if base[k - 1].type != "ai":  # an app sends after each user or tool turn
            yield f"grow-{k}", base[:k], []
    yield "tools", base, TOOLS
    yield "tools-reordered", base, TOOLS[::-1]
    if len(base) > 6:
        edited = list(base)
        edited[4] = HumanMessage(str(edited[4].content).replace("refund", "return"))
        yield "edit-middle", edited, []
        inserted = [*base[:3], SystemMessage("Profile: Dana, Enterprise plan."), *base[3:]]
        yield "insert-middle", inserted, []
        yield "truncate-oldest", [base[0], *base[3:]], []
    stamped = [SystemMessage(str(base[0].content).replace("09:15:02", "09:16:44")), *base[1:]]
    yield "volatile-system", stamped, []
    yield "system-last", [*base[1:], base[0]], []  # the layout hoists it


def _mutating() -> Iterator[tuple[str, list[BaseMessage], list[dict[str, Any]]]]:
    """One message object changed in place between calls: the memo must see the new content."""
    history = _chat(8)
    yield "mutate-0", list(history), []
    history[3].content = "Q2 (edited in place): what is the exchange window?"
    yield "mutate-1", list(history), []
    history[5].additional_kwargs["cache_control"] = {"type": "ephemeral"}
    yield "mutate-2", list(history), []
    blocks = HumanMessage(content=[{"type": "text", "text": "block one"}, {"type": "text", "text": "block two"}])
    yield "mutate-3", [*history, blocks], []
    blocks.content[1]["text"] = "block two, changed in place"  # type: ignore[index]
    yield "mutate-4", [*history, blocks], []
    history[2].tool_calls = [{"name": "search_tickets", "args": {"query": "x"}, "id": "call_m", "type": "tool_call"}]
    yield "mutate-5", [*history[:3], ToolMessage("none", tool_call_id="call_m"), *history[3:]], []


CONVERSATIONS: dict[str, Callable[[], Iterator[tuple[str, list[BaseMessage], list[dict[str, Any]]]]]] = {
    "chat": lambda: _steps(_chat()),
    "agent": lambda: _steps(_agent()),
    "media": lambda: _steps(_media()),
    "mutating": _mutating,
}
GEMINI_CONVERSATIONS = {
    "chat": CONVERSATIONS["chat"],
    "agent": CONVERSATIONS["agent"],
    "media": lambda: _steps(_gemini_media()),
}


# -- what the library makes of them ---------------------------------------------------------------------


def _record(out: dict[str, Any], key: str, make: Callable[[], Any]) -> Any:
    """`make()`, its bytes' digest stored under `key`; an error (part of the behaviour too) stored as its message."""
    try:
        value = make()
    except InvalidRequestError as exc:
        out[key] = f"error: {exc}"
        return None
    data = value.body if hasattr(value, "body") else value
    out[key] = _digest(data if isinstance(data, (bytes, str)) else json.dumps(data, sort_keys=True))
    if hasattr(value, "fingerprints"):
        out[key + "/chain"] = _digest("|".join(value.fingerprints.chain))
        out[key + "/prefix"] = value.fingerprints.prefix
    return value


def _encoders(out: dict[str, Any]) -> None:
    for name, steps in CONVERSATIONS.items():
        for step, messages, tools in steps():
            neutral = messages_from_langchain(messages)
            request = ChatRequest("glm-4.7", neutral, tuple(tool_from_langchain(t) for t in tools), temperature=0.2)
            for stream in (False, True):
                for layout in (True, False):
                    key = f"glm/{name}/{step}/stream={stream}/layout={layout}"
                    _record(out, key, lambda s=stream, lo=layout, r=request: encode_request(r, stream=s, layout=lo))
    for name, steps in GEMINI_CONVERSATIONS.items():
        for step, messages, tools in steps():
            neutral = messages_from_langchain(messages)
            request = ChatRequest("gemini-2.5-flash", neutral, tuple(tool_from_langchain(t) for t in tools))
            conversation = sum(1 for m in neutral if m.role != "system")
            for layout in (True, False):
                key = f"gemini/{name}/{step}/layout={layout}"
                _record(out, key, lambda lo=layout, r=request: encode_generate(r, stream=False, layout=lo))
                for cached in sorted({0, 1, conversation // 2, conversation - 1, conversation}):
                    _record(
                        out,
                        f"{key}/payload={cached}",
                        lambda c=cached, lo=layout, r=request: cache_payload(r, cached_messages=c, layout=lo),
                    )
                    _record(
                        out,
                        f"{key}/create={cached}",
                        lambda c=cached, lo=layout, r=request: encode_cache_create(
                            r, cached_messages=c, ttl_seconds=600, layout=lo
                        ),
                    )
                    _record(
                        out,
                        f"{key}/cached={cached}",
                        lambda c=cached, lo=layout, r=request: encode_generate(
                            r, stream=True, cached_content="cachedContents/abc", cached_messages=c, layout=lo
                        ),
                    )


class _Recording(httpx.BaseTransport):
    """The emulator's transport, keeping every request's exact bytes."""

    def __init__(self, emu: Emulator) -> None:
        self._inner = emu.transport()
        self.bodies: list[tuple[str, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append((request.url.path, request.read()))
        return self._inner.handle_request(request)


# Diagnosis fields added after the golden was recorded (Anthropic's server-side reason): left out while unset, so
# the digests still compare what the golden saw.
_LATER_FIELDS = ("provider_reason", "provider_missed_tokens")


def _diagnosis_json(d: Any) -> dict[str, Any]:
    data = {k: v for k, v in d.to_json().items() if k != "prefix_fingerprint"}
    for key in _LATER_FIELDS:
        if data.get(key) is None:
            data.pop(key, None)
    return data


def _diagnosis_digest(handler_diagnoses: list[Any]) -> list[str]:
    return [
        _digest(json.dumps(_diagnosis_json(d), sort_keys=True)) + f" {d.conversation}#{d.call_index} {d.cause}"
        for d in handler_diagnoses
    ]


def _models(out: dict[str, Any]) -> None:
    clock = FakeClock(1_800_000_000.0)
    emu = Emulator(clock=clock)
    handler = CacheUsageCallbackHandler(diagnostics=CacheDiagnostics(clock=clock.time, warn=False))
    wire = _Recording(emu)
    glm = ChatGLM(
        model="glm-4.7", api_key="k", base_url="http://e/api/paas/v4", http_client=httpx.Client(transport=wire)
    )
    gemini = ChatGemini(
        model="gemini-2.5-flash",
        api_key="k",
        base_url="http://e/v1beta",
        http_client=httpx.Client(transport=wire),
        cache_registry="memory",
        cache_mode="always",
    )
    for label, model, conversations in (("ChatGLM", glm, CONVERSATIONS), ("ChatGemini", gemini, GEMINI_CONVERSATIONS)):
        for name, steps in conversations.items():
            for step, messages, tools in steps():
                bound: Any = model.bind_tools(tools) if tools else model
                clock.advance(5)
                wire.bodies.clear()
                try:
                    bound.invoke(messages, config={"callbacks": [handler]})
                except InvalidRequestError as exc:
                    out[f"{label}/{name}/{step}/error"] = str(exc)
                for i, (path, body) in enumerate(wire.bodies):
                    out[f"{label}/{name}/{step}/request{i}"] = f"{path} {_digest(body)}"
    out["handler/diagnoses"] = _diagnosis_digest(handler.diagnoses)


def _llama(out: dict[str, Any]) -> None:
    clock = FakeClock(1_800_000_000.0)
    emu = Emulator(clock=clock)
    wire = _Recording(emu)
    llm = GLM(model="glm-4.7", api_key="k", base_url="http://e/api/paas/v4", http_client=httpx.Client(transport=wire))
    usage = CacheUsageHandler(diagnostics=CacheDiagnostics(clock=clock.time, warn=False))
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(usage)
    try:
        roles = {"system": MessageRole.SYSTEM, "human": MessageRole.USER, "ai": MessageRole.ASSISTANT}
        for step, messages, _ in CONVERSATIONS["chat"]():
            converted = [ChatMessage(role=roles[m.type], content=str(m.content)) for m in messages]
            out[f"llama/encode/{step}"] = _digest(
                encode_request(ChatRequest("glm-4.7", messages_from_llama_index(converted)), stream=False).body
            )
            clock.advance(5)
            wire.bodies.clear()
            llm.chat(converted)
            out[f"llama/GLM/{step}"] = " ".join(_digest(body) for _, body in wire.bodies)
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not usage]
    out["llama/diagnoses"] = _diagnosis_digest(usage.diagnoses)


def _lineage(out: dict[str, Any]) -> None:
    """Diagnostics alone: conversations interleaved without session ids, sharing a system prompt, branching,
    sliding, edited at their start, with session ids and across scopes; usage as a provider would report it."""
    clock = FakeClock(1_800_000_000.0)
    diagnostics = CacheDiagnostics(clock=clock.time, warn=False, keep_requests=8, max_conversations=16)
    system = Message("system", "Shared system prompt. " + "Policy text. " * 40)
    long_start = "The first question is long: " + "context " * 40
    histories: dict[str, list[Message]] = {f"u{k}": [system] for k in range(6)}
    for turn in range(8):
        for user, history in histories.items():
            if turn == 0 and user == "u5":
                history.append(Message("user", long_start + "variant one"))
            else:
                history.append(Message("user", f"{user} turn {turn}: question about item {turn * 7 % 11}"))
            session = "s-" + user if user in ("u3", "u4") else None
            scope = "tenant-b" if user == "u4" else None
            sent = list(history)
            if user == "u2" and turn >= 5:
                sent = [system, *history[-6:]]  # a sliding window
            if user == "u5" and turn == 4:
                sent = [system, Message("user", long_start + "variant two"), *history[2:]]  # its start edited
            tokens = sum(len(m.text) for m in sent) // 4
            cached = tokens - 40 if turn % 3 else tokens // 2
            clock.advance(7 if turn != 6 else 4000)
            diagnostics.observe(
                model="glm-4.7",
                messages=sent,
                usage=Usage(input_tokens=tokens, cache_read_tokens=max(cached, 0), output_tokens=9),
                provider="zhipuai",
                session=session,
                scope=scope,
            )
            history.append(Message("assistant", f"answer {turn} for {user}"))
        if turn == 3:  # a new conversation that shares only the system prompt, and a branch of u0
            for extra in (
                [system, Message("user", "brand new question")],
                [*histories["u0"][:3], Message("user", "b")],
            ):
                diagnostics.observe(model="glm-4.7", messages=extra, usage=Usage(input_tokens=300), provider="zhipuai")
    out["lineage/diagnoses"] = _diagnosis_digest(diagnostics.diagnoses)


def golden() -> dict[str, Any]:
    out: dict[str, Any] = {}
    _lineage(out)
    _encoders(out)
    _models(out)
    _llama(out)
    return out


if __name__ == "__main__":
    result = golden()
    if "--write" in sys.argv:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(result)} entries to {GOLDEN}")
    else:
        print(json.dumps(result, indent=1, sort_keys=True))
