"""Qwen on DashScope's OpenAI-compatible mode through the real `ChatOpenAI`, and ChatOpenAI on DeepSeek.

Both are common setups (no Qwen or DeepSeek class needed), and both answer with usage fields ChatOpenAI
does not map into `usage_metadata`: DashScope's explicit-mode ``cache_creation_input_tokens`` and older
DeepSeek answers' ``prompt_cache_hit_tokens``. The handler must still report what the emulator sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from cache_integrations.langchain import get_cache_usage_callback, with_prompt_caching
from cache_integrations.langchain._convert import usage_from_langchain
from cache_integrations.testing import Emulator, FakeClock, RunningServer

from .long_prompt import LONG_SYSTEM_PROMPT

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.fixture
def emu() -> Emulator:
    return Emulator(clock=FakeClock(), deepseek_prompt_tokens_details=False)


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _qwen(server: RunningServer) -> ChatOpenAI:
    return ChatOpenAI(model="qwen-plus", api_key="test-key", base_url=server.dashscope_base_url, max_retries=0)


def test_qwen_implicit_caching_through_chatopenai(emu: Emulator, server: RunningServer) -> None:
    llm = with_prompt_caching(_qwen(server), provider="dashscope")
    with get_cache_usage_callback() as usage:
        llm.invoke([("human", "first"), ("system", LONG_SYSTEM_PROMPT)])
        llm.invoke([("human", "second"), ("system", LONG_SYSTEM_PROMPT)])
    sent = [r for r in emu.requests if r.endpoint == "dashscope"]
    assert [m["role"] for m in sent[0].body["messages"]] == ["system", "user"]
    assert "prompt_cache_key" not in sent[0].body
    reads = [r.usage["prompt_tokens_details"]["cached_tokens"] for r in sent if r.usage]
    assert reads[0] == 0 and reads[1] > 1000
    assert [c.usage.cache_read_tokens for c in usage.calls] == reads


def test_qwen_explicit_cache_control_writes_reach_the_handler(emu: Emulator, server: RunningServer) -> None:
    marked = SystemMessage(
        content=[{"type": "text", "text": LONG_SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
    )
    llm = with_prompt_caching(_qwen(server), provider="dashscope")
    with get_cache_usage_callback() as usage:
        llm.invoke([marked, HumanMessage("first")])
        llm.invoke([marked, HumanMessage("second")])
    written = emu.counters.cache_write_tokens_by_endpoint["dashscope"]
    assert written > 1000
    assert [c.usage.cache_write_tokens for c in usage.calls] == [written, 0]
    assert [c.usage.cache_read_tokens for c in usage.calls] == [0, emu.counters.cached_tokens_explicit]


def test_chatopenai_on_deepseek_reads_prompt_cache_hit_tokens(emu: Emulator, server: RunningServer) -> None:
    llm = ChatOpenAI(model="deepseek-chat", api_key="test-key", base_url=server.deepseek_base_url, max_retries=0)
    with get_cache_usage_callback() as usage:
        llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "one")])
        warm = llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "two")])
    assert warm.usage_metadata is not None and "cache_read" not in warm.usage_metadata["input_token_details"]
    hits = [r.usage["prompt_cache_hit_tokens"] for r in emu.requests if r.endpoint == "deepseek" and r.usage]
    assert "prompt_tokens_details" not in emu.requests[-1].usage  # type: ignore[operator]
    assert hits[1] > 0 and [c.usage.cache_read_tokens for c in usage.calls] == hits


def test_usage_from_langchain_prefers_what_usage_metadata_has() -> None:
    meta: Any = {"input_tokens": 100, "output_tokens": 5, "input_token_details": {"cache_read": 64}}
    raw = {
        "prompt_tokens": 100,
        "prompt_cache_hit_tokens": 32,
        "prompt_tokens_details": {"cache_creation_input_tokens": 9},
    }
    usage = usage_from_langchain(meta, {"token_usage": raw})
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (64, 9)
    assert usage_from_langchain(meta, {"token_usage": "not usage"}).cache_write_tokens == 0
