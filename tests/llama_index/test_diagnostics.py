"""Why did my cache miss, for LlamaIndex: the same diagnoses through the LlamaIndex GLM and handlers."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.tools import FunctionTool

from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.llama_index import CachedTokenCountingHandler, CacheUsageHandler
from cache_integrations.testing import Emulator, FakeClock

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import make_glm


def _system(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.SYSTEM, content=text)


def _user(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=text)


@pytest.fixture
def handler(clock: FakeClock, tmp_path: Path) -> CacheUsageHandler:
    h = CacheUsageHandler(diagnostics=CacheDiagnostics(clock=clock.time, trace=tmp_path / "trace.jsonl"))
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(h)
    yield h  # type: ignore[misc]
    dispatcher.event_handlers.remove(h)


def test_a_timestamp_in_the_system_prompt(
    emu: Emulator, handler: CacheUsageHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    glm = make_glm(emu)
    for i in range(3):
        now = datetime.datetime(2026, 11, 22, 9, 0, i).isoformat()
        glm.chat([_system(f"Current time: {now}\n{LONG_SYSTEM_PROMPT}"), _user(f"Question {i}")])
    first, *rest = handler.diagnoses
    assert first.cause is None
    assert [(d.cause, d.message_index, d.char_offset) for d in rest] == [("volatile_content", 0, 14)] * 2
    assert all(d.lost_tokens > 1000 for d in rest)
    assert len([r for r in caplog.records if "prompt cache miss" in r.getMessage()]) == 1


def test_a_stable_chat_warns_nothing(
    emu: Emulator, handler: CacheUsageHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    glm = make_glm(emu)
    history = [_system(LONG_SYSTEM_PROMPT)]
    for i in range(4):
        history.append(_user(f"Question {i}?"))
        history.append(glm.chat(history).message)
    assert [d.cause for d in handler.diagnoses] == [None] * 4
    assert not [r for r in caplog.records if "prompt cache miss" in r.getMessage()]


def test_tools_reordered_without_the_layout_step(emu: Emulator, handler: CacheUsageHandler) -> None:
    def weather(city: str) -> str:
        """Weather for a city."""
        return city

    def clock(zone: str) -> str:
        """Time in a zone."""
        return zone

    tools = [FunctionTool.from_defaults(weather), FunctionTool.from_defaults(clock)]
    glm = make_glm(emu, cache_friendly_layout=False)
    messages = [_system(LONG_SYSTEM_PROMPT), _user("hello")]
    glm.chat_with_tools(tools, chat_history=messages)
    glm.chat_with_tools(list(reversed(tools)), chat_history=messages)
    assert handler.diagnoses[-1].cause == "tools_reordered"


def test_a_sliding_window_and_inserted_memory(emu: Emulator, handler: CacheUsageHandler) -> None:
    glm = make_glm(emu)
    turns = [_user("Q0?"), ChatMessage(role=MessageRole.ASSISTANT, content="A0."), _user("Q1?")]
    turns += [ChatMessage(role=MessageRole.ASSISTANT, content="A1."), _user("Q2?")]
    glm.chat([_system(LONG_SYSTEM_PROMPT), *turns])
    glm.chat(
        [_system(LONG_SYSTEM_PROMPT), *turns[2:], ChatMessage(role=MessageRole.ASSISTANT, content="A2."), _user("Q3?")]
    )
    assert (handler.diagnoses[-1].cause, handler.diagnoses[-1].message_index) == ("history_truncated", 1)
    glm.chat([_system(LONG_SYSTEM_PROMPT), _user("Memory: Dana likes tea."), *turns[2:], _user("Q4?")])
    assert handler.diagnoses[-1].cause == "history_rewritten" and "inserted" in handler.diagnoses[-1].detail


def test_sessions_from_instrument_tags(emu: Emulator, handler: CacheUsageHandler) -> None:
    glm = make_glm(emu)
    for session in ("alpha", "beta"):
        with instrument_tags({"session_id": session}):
            glm.chat([_system(LONG_SYSTEM_PROMPT), _user("q1")])
            glm.chat([_system(LONG_SYSTEM_PROMPT), _user("q2")])
    assert [(d.conversation, d.call_index) for d in handler.diagnoses] == [
        ("alpha", 0),
        ("alpha", 1),
        ("beta", 0),
        ("beta", 1),
    ]


def test_the_token_counting_handler_diagnoses_too(emu: Emulator, clock: FakeClock) -> None:
    counter = CachedTokenCountingHandler(diagnostics=CacheDiagnostics(clock=clock.time))
    glm = make_glm(emu, callback_manager=CallbackManager([counter]))
    for i in range(2):
        now = datetime.datetime(2026, 11, 22, 9, 0, i).isoformat()
        glm.chat([_system(f"Now: {now}. {LONG_SYSTEM_PROMPT}"), _user("q")])
    assert [d.cause for d in counter.diagnoses] == [None, "volatile_content"]
    assert counter.diagnoses[-1].char_offset == len("Now: ")
