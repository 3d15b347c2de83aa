"""`with_prompt_caching` without a server: provider detection, the provider-applier hook, nested calls, unknown LLMs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation.dispatcher import active_instrument_tags, instrument_tags
from llama_index.core.llms import MockLLM
from llama_index.llms.anthropic import Anthropic
from llama_index.llms.google_genai import GoogleGenAI
from llama_index.llms.openai import OpenAI, OpenAIResponses

from cache_integrations.llama_index import GLM, prompt_cache_session, with_prompt_caching
from cache_integrations.llama_index import _foreign as foreign
from cache_integrations.llama_index._foreign import PROVIDER_APPLIERS, LlamaCall, detect_provider
from cache_integrations.strategies import CachePlan

from .conftest import make_glm


def _user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def _system(text: str) -> ChatMessage:
    return ChatMessage(role="system", content=text)


class DeepSeekLike(OpenAI):
    """A class of another llama-index-llms package built on `OpenAI` (as llama-index-llms-deepseek is)."""


DeepSeekLike.__module__ = "llama_index.llms.deepseek.base"


class MyCompanyOpenAI(OpenAI):
    """A user's own subclass, in the user's own module."""


@pytest.mark.parametrize(
    ("llm", "provider"),
    [
        (OpenAI(model="gpt-4o-mini", api_key="k"), "openai"),
        (OpenAI(model="gpt-4o-mini", api_key="k", api_base="http://127.0.0.1:8000/v1"), "openai_compatible"),
        (OpenAI(model="gpt-4o-mini", api_key="k", api_base="https://api.deepseek.com"), "deepseek"),
        (OpenAIResponses(model="gpt-4o-mini", api_key="k"), "openai"),
        (MyCompanyOpenAI(model="gpt-4o-mini", api_key="k"), "openai"),
        (DeepSeekLike(model="gpt-4o-mini", api_key="k", api_base="http://127.0.0.1:8000/v1"), "deepseek"),
        (Anthropic(model="claude-sonnet-4-5", api_key="k"), "anthropic"),
        (GoogleGenAI(model="gemini-2.5-flash", api_key="k", max_tokens=64, context_window=1_048_576), "google"),
        (MockLLM(), "unknown"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_the_provider_is_detected_from_package_class_and_base_url(llm: Any, provider: str) -> None:
    assert detect_provider(llm) == provider
    assert detect_provider(with_prompt_caching(llm)) == provider


def test_a_provider_applier_gets_the_planned_call_and_its_changes_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[LlamaCall] = []

    def applier(call: LlamaCall, plan: CachePlan) -> LlamaCall:
        seen.append(call)
        marked = ChatMessage(role="user", content="question, as the applier sent it")
        return LlamaCall(call.llm, (*call.messages[:-1], marked), call.tools, call.settings, call.session, call.stream)

    monkeypatch.setitem(PROVIDER_APPLIERS, "unknown", applier)
    llm = with_prompt_caching(MockLLM(max_tokens=None), session_id="s-1")
    caller_messages = [_user("question"), _system("rules")]
    reply = llm.chat(caller_messages)
    assert seen[0].llm is llm and seen[0].session == "s-1" and not seen[0].stream
    assert [m.role.value for m in seen[0].messages] == ["system", "user"]  # after the generic reordering
    assert reply.message.content == "system: rules\nuser: question, as the applier sent it\nassistant: "
    assert caller_messages[0].content == "question"


def test_an_unknown_llm_gets_the_layout_with_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    llm = with_prompt_caching(MockLLM(max_tokens=None))
    with caplog.at_level(logging.DEBUG, logger="cache_integrations.llama_index"):
        first = llm.chat([_user("U"), _system("S")])
        llm.chat([_user("again")])
    assert first.message.content == "system: S\nuser: U\nassistant: "
    assert len([r for r in caplog.records if "no strategy for PromptCachingMockLLM" in r.getMessage()]) == 1


def test_a_method_built_on_another_public_one_is_planned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # MockLLM (a CustomLLM) answers chat() through its own complete(): one plan, not one per layer
    llm = with_prompt_caching(MockLLM(max_tokens=None))
    prepared: list[LlamaCall] = []
    original = foreign.LlamaCachingCoordinator.prepare

    def spy(self: foreign.LlamaCachingCoordinator, call: LlamaCall) -> Any:
        prepared.append(call)
        return original(self, call)

    monkeypatch.setattr(foreign.LlamaCachingCoordinator, "prepare", spy)
    llm.chat([_user("U")])
    assert len(prepared) == 1 and not prepared[0].completion
    llm.complete("P")
    assert len(prepared) == 2 and prepared[1].completion


def test_this_packages_own_llms_are_returned_unchanged(emu: Any) -> None:
    glm = make_glm(emu)
    assert with_prompt_caching(glm) is glm
    assert isinstance(glm, GLM)


def test_a_session_block_keeps_the_other_instrument_tags_and_nests() -> None:
    with instrument_tags({"user": "u-1"}), prompt_cache_session("outer"):
        assert active_instrument_tags.get() == {"user": "u-1", "session_id": "outer"}
        with prompt_cache_session("inner"):
            assert active_instrument_tags.get()["session_id"] == "inner"
        assert active_instrument_tags.get()["session_id"] == "outer"
    assert active_instrument_tags.get() == {}


def test_streams_feed_their_usage_back_after_the_last_chunk() -> None:
    llm = with_prompt_caching(MockLLM(max_tokens=None))
    observed: list[Any] = []
    llm.prompt_caching.observe = lambda prepared, response: observed.append(response)  # type: ignore[method-assign]
    chunks = list(llm.stream_chat([_user("U")]))
    assert observed == [chunks[-1]]


def test_options_the_llm_already_sets_are_not_passed_again() -> None:
    # OpenAIResponses lets call keywords override its additional_kwargs: a planned key must not replace the
    # caller's own
    coordinator = foreign.LlamaCachingCoordinator(provider="openai", prompt_cache_key="planned", retention="24h")
    own = OpenAIResponses(model="gpt-4o-mini", api_key="k", additional_kwargs={"prompt_cache_key": "own"})
    prepared = coordinator.prepare(LlamaCall.of(own, [_user("q")], {}))
    assert "prompt_cache_key" not in prepared.call.settings
    assert prepared.call.settings["prompt_cache_retention"] == "24h"
    plain = OpenAIResponses(model="gpt-4o-mini", api_key="k")
    assert coordinator.prepare(LlamaCall.of(plain, [_user("q")], {})).call.settings["prompt_cache_key"] == "planned"
    called = coordinator.prepare(LlamaCall.of(plain, [_user("q")], {"prompt_cache_key": "call"}))
    assert called.call.settings["prompt_cache_key"] == "call"
