"""Why did my cache miss? Each way of breaking a prefix, through ChatGLM against the emulator."""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from cache_integrations.diagnostics import CacheDiagnostics, Diagnosis
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM, lint_prompt
from cache_integrations.testing import Emulator, FakeClock

from .long_prompt import LONG_SYSTEM_PROMPT

PROFILE = "User profile: Dana, enterprise plan, prefers short answers."


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


def _llm(emu: Emulator, **kwargs: Any) -> ChatGLM:
    return ChatGLM(
        api_key="k",
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=emu.transport()),
        **kwargs,
    )


def _run(llm: Any, conversations: list[list[Any]], handler: CacheUsageCallbackHandler) -> list[Diagnosis]:
    for messages in conversations:
        llm.invoke(messages, config={"callbacks": [handler]})
    return handler.diagnoses


def _handler(clock: FakeClock, **kwargs: Any) -> CacheUsageCallbackHandler:
    return CacheUsageCallbackHandler(diagnostics=CacheDiagnostics(clock=clock.time, **kwargs))


def test_a_timestamp_in_the_system_prompt(
    emu: Emulator, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    trace = tmp_path / "trace.jsonl"
    handler = _handler(clock, trace=trace)
    calls = []
    for i in range(4):
        now = datetime.datetime(2026, 11, 22, 9, 0, i).isoformat()
        calls.append([("system", f"Current time: {now}\n{LONG_SYSTEM_PROMPT}"), ("human", f"Question {i}")])
    diagnoses = _run(_llm(emu), calls, handler)
    first, *rest = diagnoses
    assert first.cause is None
    for d in rest:
        assert (d.cause, d.message_index, d.char_offset) == ("volatile_content", 0, len("Current time: "))
        assert "timestamp" in d.detail and d.fix.startswith("move the changing value")
        assert d.lost_tokens > 1000 and d.lost_usd is not None and d.lost_usd > 0
    warnings = [r for r in caplog.records if "prompt cache miss" in r.getMessage()]
    assert len(warnings) == 1  # once per cause, not per call
    message = warnings[0].getMessage()
    assert "messages[0]" in message and "character 14" in message and "last user message" in message
    assert LONG_SYSTEM_PROMPT[:40] not in trace.read_text()  # no prompt text unless asked
    report = subprocess.run(
        [sys.executable, "-m", "cache_integrations", "doctor", str(trace)], capture_output=True, text=True, check=True
    ).stdout
    assert "volatile_content" in report and "3 " in report and "$" in report and "messages[0], character 14" in report
    lost = sum(d.lost_tokens for d in rest)
    assert str(lost) in report


def test_a_stable_conversation_warns_nothing(emu: Emulator, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    handler = _handler(clock)
    llm = _llm(emu)
    history: list[Any] = [SystemMessage(LONG_SYSTEM_PROMPT)]
    for i in range(4):
        history.append(HumanMessage(f"Question {i}?"))
        reply = llm.invoke(history, config={"callbacks": [handler]})
        history.append(AIMessage(content=reply.content, additional_kwargs=reply.additional_kwargs))
    assert [d.cause for d in handler.diagnoses] == [None] * 4
    assert all(d.efficiency is not None and d.efficiency > 0.99 for d in handler.diagnoses[1:])  # estimated tokens
    assert not [r for r in caplog.records if "prompt cache miss" in r.getMessage()]


def test_tools_reordered_without_the_layout_step(emu: Emulator, clock: FakeClock) -> None:
    def weather(city: str) -> str:
        """Weather for a city."""
        return city

    def clock_tool(zone: str) -> str:
        """Time in a zone."""
        return zone

    llm = _llm(emu, cache_friendly_layout=False)
    handler = _handler(clock)
    prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "hi")]
    llm.bind_tools([weather, clock_tool]).invoke(prompt, config={"callbacks": [handler]})
    llm.bind_tools([clock_tool, weather]).invoke(prompt, config={"callbacks": [handler]})
    d = handler.diagnoses[-1]
    assert d.cause == "tools_reordered" and d.message_index is None
    assert "cache_friendly_layout" in d.fix
    # with the layout step the same app keeps its cache
    llm_on, handler_on = _llm(emu), _handler(clock)
    llm_on.bind_tools([weather, clock_tool]).invoke(prompt, config={"callbacks": [handler_on]})
    llm_on.bind_tools([clock_tool, weather]).invoke(prompt, config={"callbacks": [handler_on]})
    assert handler_on.diagnoses[-1].cause is None


def test_tools_changed(emu: Emulator, clock: FakeClock) -> None:
    def search(query: str) -> str:
        """Search the docs."""
        return query

    def search_v2(query: str, limit: int) -> str:
        """Search the docs."""
        return query

    llm, handler = _llm(emu), _handler(clock)
    prompt = [("system", LONG_SYSTEM_PROMPT), ("human", "hi")]
    llm.bind_tools([search]).invoke(prompt, config={"callbacks": [handler]})
    llm.bind_tools([search_v2]).invoke(prompt, config={"callbacks": [handler]})
    assert handler.diagnoses[-1].cause == "tools_changed"


def test_a_system_prompt_edited_between_calls(emu: Emulator, clock: FakeClock) -> None:
    edited = LONG_SYSTEM_PROMPT.replace("Rule 4.1:", "Rule 4.1 (revised):")
    offset = LONG_SYSTEM_PROMPT.index("Rule 4.1:") + len("Rule 4.1")
    diagnoses = _run(
        _llm(emu),
        [[("system", LONG_SYSTEM_PROMPT), ("human", "q1")], [("system", edited), ("human", "q2")]],
        _handler(clock),
    )
    d = diagnoses[-1]
    assert (d.cause, d.message_index, d.char_offset) == ("system_prompt_changed", 0, offset)
    assert 0 < d.token_offset < d.input_tokens  # type: ignore[operator]


def test_memory_inserted_ahead_of_the_history(emu: Emulator, clock: FakeClock) -> None:
    turns: list[Any] = [("human", "First question?"), ("ai", "First answer."), ("human", "Second question?")]
    diagnoses = _run(
        _llm(emu),
        [
            [("system", LONG_SYSTEM_PROMPT), *turns],
            [("system", LONG_SYSTEM_PROMPT), ("human", PROFILE), *turns, ("ai", "Second answer."), ("human", "Third?")],
        ],
        _handler(clock),
    )
    d = diagnoses[-1]
    assert (d.cause, d.message_index) == ("history_rewritten", 1) and "inserted" in d.detail
    assert d.potential_cacheable_tokens > d.expected_cacheable_tokens  # an append-only layout would keep the turns


def test_a_sliding_window_that_drops_the_oldest_turns(emu: Emulator, clock: FakeClock) -> None:
    history = [("human", f"Question {i}?") if i % 2 == 0 else ("ai", f"Answer {i}.") for i in range(8)]
    diagnoses = _run(
        _llm(emu),
        [
            [("system", LONG_SYSTEM_PROMPT), *history, ("human", "Next?")],
            [("system", LONG_SYSTEM_PROMPT), *history[2:], ("human", "Next?"), ("ai", "Sure."), ("human", "And then?")],
        ],
        _handler(clock),
    )
    d = diagnoses[-1]
    assert (d.cause, d.message_index) == ("history_truncated", 1) and "2 message(s) dropped" in d.detail


def test_a_prefix_below_the_provider_minimum(emu: Emulator, clock: FakeClock) -> None:
    handler = _handler(clock, minimums={"zhipuai": 4096})
    diagnoses = _run(_llm(emu), [[("system", LONG_SYSTEM_PROMPT), ("human", f"q{i}")] for i in range(2)], handler)
    assert diagnoses[-1].cause == "below_minimum" and "4096" in diagnoses[-1].detail


def test_a_cache_that_outlived_its_ttl(emu: Emulator, clock: FakeClock) -> None:
    llm, handler = _llm(emu), _handler(clock, ttls={"zhipuai": 300.0})
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q1")], config={"callbacks": [handler]})
    clock.advance(900)  # the emulator's GLM cache keeps prefixes for 300 s
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q2")], config={"callbacks": [handler]})
    d = handler.diagnoses[-1]
    assert d.cause == "ttl_elapsed" and d.reported_cached_tokens < 20 and "900 s" in d.detail


def test_a_provider_side_miss(emu: Emulator, clock: FakeClock) -> None:
    llm, handler = _llm(emu), _handler(clock)
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q1")], config={"callbacks": [handler]})
    emu.evict_all()  # the provider dropped its cache: nothing the app did
    llm.invoke([("system", LONG_SYSTEM_PROMPT), ("human", "q2")], config={"callbacks": [handler]})
    d = handler.diagnoses[-1]
    assert d.cause == "provider_side_miss" and d.expected_cacheable_tokens > 1000 and d.efficiency is not None
    assert d.efficiency < 0.1


def test_sessions_keep_conversations_apart(emu: Emulator, clock: FakeClock) -> None:
    llm, handler = _llm(emu), _handler(clock)
    for session, system in (("a", LONG_SYSTEM_PROMPT), ("b", "Another assistant. " + LONG_SYSTEM_PROMPT)):
        for q in ("q1", "q2"):
            llm.invoke(
                [("system", system), ("human", q)], config={"callbacks": [handler], "metadata": {"session_id": session}}
            )
    assert [(d.conversation, d.call_index, d.cause) for d in handler.diagnoses] == [
        ("a", 0, None),
        ("a", 1, None),
        ("b", 0, None),
        ("b", 1, None),
    ]


def test_the_trace_holds_prompts_only_when_asked(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    _run(
        _llm(emu), [[("system", LONG_SYSTEM_PROMPT), ("human", "q")]], _handler(clock, trace=trace, trace_prompts=True)
    )
    record = json.loads(trace.read_text().splitlines()[0])
    assert LONG_SYSTEM_PROMPT[:40] in record["prompt"] and record["prefix_fingerprint"]


def test_doctor_on_a_bad_trace_says_which_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": "c1"}\nnot json\n')
    run = subprocess.run(
        [sys.executable, "-m", "cache_integrations", "doctor", str(bad)], capture_output=True, text=True
    )
    # the malformed line is skipped and named; the rest of the trace is still reported
    assert run.returncode == 0, run.stderr
    assert "Skipped 1 malformed line(s) of the trace (line 2: not valid JSON" in run.stdout
    assert "1 calls in 1 conversation(s)" in run.stdout


def test_lint_prompt_reports_volatile_values_in_the_prefix_only() -> None:
    findings = lint_prompt(
        [("system", "Build 2026-11-02T10:00:00Z. Trace abc12345-aaaa-bbbb-cccc-1234567890ab."), ("human", "Today?")]
    )
    assert [(f.kind, f.where) for f in findings] == [
        ("timestamp", "messages[0] (system)"),
        ("uuid", "messages[0] (system)"),
    ]
    assert lint_prompt([("system", LONG_SYSTEM_PROMPT), ("human", "It is 2026-11-22 today")]) == []


def test_lint_prompt_on_a_template() -> None:
    template = ChatPromptTemplate.from_messages(
        [("system", "You help {user_name}. Today is {current_date}."), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    findings = {f.value: f for f in lint_prompt(template)}
    assert set(findings) == {"{user_name}", "{current_date}"}
    assert "likely changes per call" in findings["{current_date}"].kind
    assert "last user message" in findings["{current_date}"].fix


def test_a_one_shot_question_after_a_chat_is_a_new_branch_not_a_miss(
    emu: Emulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cache_integrations.diagnostics")
    chat = [("system", LONG_SYSTEM_PROMPT), ("human", "Q1?"), ("ai", "A1."), ("human", "Q2?")]
    diagnoses = _run(
        _llm(emu), [chat, [("system", LONG_SYSTEM_PROMPT), ("human", "Unrelated one-shot question")]], _handler(clock)
    )
    assert diagnoses[-1].cause is None and "new branch" in diagnoses[-1].detail
    assert not [r for r in caplog.records if "prompt cache miss" in r.getMessage()]


def test_a_repeated_prefix_is_masked_once_not_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from cache_integrations import _units as module
    from cache_integrations.messages import Message
    from cache_integrations.usage import Usage

    masked: list[str] = []
    real = module.mask
    monkeypatch.setattr(module, "mask", lambda text: masked.append(text) or real(text))
    diag = CacheDiagnostics(warn=False)
    for i in range(5):
        diag.observe(
            model="glm-4.7",
            messages=[Message("system", LONG_SYSTEM_PROMPT + " memo"), Message("user", f"q{i}")],
            usage=Usage(input_tokens=1800, cache_read_tokens=1700 if i else 0),
            provider="zhipuai",
        )
    assert sum(LONG_SYSTEM_PROMPT in text for text in masked) == 1  # the long system prompt: once, not five times
    assert [d.cause for d in diag.diagnoses] == [None] * 5
