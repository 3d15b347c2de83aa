"""The miss diagnosis works unchanged on partner models wrapped with `with_prompt_caching`: a timestamp in the
system prompt is explained with its cause and place, for ChatOpenAI, ChatAnthropic and ChatGoogleGenerativeAI,
against the emulator over loopback HTTP."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI

from cache_integrations.langchain import get_cache_usage_callback, with_prompt_caching
from cache_integrations.testing import Emulator, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _openai(server: RunningServer) -> BaseChatModel:
    return ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url=server.openai_base_url, max_retries=0)


def _anthropic(server: RunningServer) -> BaseChatModel:
    return ChatAnthropic(
        model="claude-sonnet-4-6", api_key="sk-ant-test", base_url=server.anthropic_base_url, max_retries=0
    )


def _google(server: RunningServer) -> BaseChatModel:
    return ChatGoogleGenerativeAI(
        model="gemini-2.5-flash", google_api_key="g-key", base_url=server.url, api_version="v1beta", max_retries=0
    )


MODELS: dict[str, tuple[Callable[[RunningServer], BaseChatModel], dict[str, Any]]] = {
    "openai": (_openai, {}),
    "anthropic": (_anthropic, {}),
    "google": (_google, {"cache_registry": "memory"}),
}


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_a_timestamp_in_the_system_prompt_is_explained(
    provider: str, streamed: bool, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    make, options = MODELS[provider]
    llm = with_prompt_caching(make(server), **options)
    with get_cache_usage_callback() as usage:
        for i in range(3):
            now = datetime.datetime(2026, 11, 22, 9, 0, i).isoformat()
            messages = [("system", f"Current time: {now}\n{LONG_SYSTEM_PROMPT}"), ("human", f"Question {i}")]
            if streamed:
                for _ in llm.stream(messages):
                    pass
            else:
                llm.invoke(messages)
    first, *rest = usage.diagnoses
    assert len(rest) == 2 and first.cause is None
    for d in rest:
        assert (d.cause, d.message_index, d.char_offset) == ("volatile_content", 0, len("Current time: "))
        assert "timestamp" in d.detail and d.fix.startswith("move the changing value")
        assert d.lost_tokens > 1000
    [warning] = [r.getMessage() for r in caplog.records if "prompt cache miss" in r.getMessage()]
    assert "messages[0], character 14" in warning


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_stable_prefix_is_not_a_miss(provider: str, server: RunningServer) -> None:
    make, options = MODELS[provider]
    llm = with_prompt_caching(make(server), **options)
    with get_cache_usage_callback() as usage:
        for i in range(3):
            llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", f"Question {i}")])
    assert [d.cause for d in usage.diagnoses] == [None, None, None]
    assert usage.total.cache_read_tokens > 0
