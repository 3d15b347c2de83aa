"""One conversion per call (issue 15), LlamaIndex side: the LLMs of this package publish the request they built
under the call's span, and both cache usage handlers diagnose it instead of converting the messages again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager

from cache_integrations.llama_index import CachedTokenCountingHandler, CacheUsageHandler, _handoff, handlers
from cache_integrations.testing import Emulator

from .conftest import make_glm

SYSTEM = "You answer from the handbook. " * 40


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = handlers.messages_from_llama_index
    monkeypatch.setattr(handlers, "messages_from_llama_index", lambda m: seen.append("handler") or real(m))
    return seen


def _ask(q: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM), ChatMessage(role=MessageRole.USER, content=q)]


@pytest.mark.parametrize("mode", ["chat", "stream_chat", "achat"])
def test_the_event_handler_diagnoses_what_the_llm_built(
    mode: str, emu: Emulator, usage: CacheUsageHandler, conversions: list[str]
) -> None:
    llm = make_glm(emu)
    for q in ("First?", "Second?"):
        if mode == "chat":
            llm.chat(_ask(q))
        elif mode == "stream_chat":
            list(llm.stream_chat(_ask(q)))
        else:
            asyncio.run(llm.achat(_ask(q)))
    assert [d.call_index for d in usage.diagnoses] == [0, 1]
    assert usage.diagnoses[1].cause is None
    if mode != "stream_chat":  # a stream ends in its consumer's span: the handler may convert then
        assert conversions == []


def test_the_callback_manager_handler_diagnoses_what_the_llm_built(emu: Emulator, conversions: list[str]) -> None:
    counter = CachedTokenCountingHandler()
    llm = make_glm(emu, callback_manager=CallbackManager([counter]))
    for q in ("First?", "Second?"):
        llm.chat(_ask(q))
    assert [d.call_index for d in counter.diagnoses] == [0, 1]
    assert conversions == []


def test_nothing_is_published_without_a_handler(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_handoff, "_listeners", type(_handoff._listeners)())
    _handoff._published.clear()
    make_glm(emu).chat(_ask("q"))
    assert len(_handoff._published) == 0


def test_published_requests_are_bounded(emu: Emulator, usage: CacheUsageHandler) -> None:
    llm = make_glm(emu)
    for i in range(_handoff.MAX_PUBLISHED + 20):
        llm.chat([ChatMessage(role=MessageRole.USER, content=f"q{i}")])
    assert len(_handoff._published) <= _handoff.MAX_PUBLISHED


def test_another_llm_s_messages_are_converted_at_the_end(
    emu: Emulator, usage: CacheUsageHandler, conversions: list[str]
) -> None:
    from llama_index.core.llms import MockLLM

    class Reporting(MockLLM):  # a foreign LLM reporting OpenAI-style usage
        def chat(self, messages: Any, **kwargs: Any) -> Any:
            response = super().chat(messages, **kwargs)
            response.raw = {"usage": {"prompt_tokens": 900, "completion_tokens": 2, "total_tokens": 902}}
            return response

    Reporting().chat(_ask("q"))
    assert conversions in ([], ["handler"])  # MockLLM's chat goes through complete(): a completion event
