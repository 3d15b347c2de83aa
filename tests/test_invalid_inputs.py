"""Invalid inputs fail before anything is sent, in both frameworks, naming the field.

Every row builds a model wired to a fresh emulator, does one wrong thing (a constructor argument or a
per-call override, sync, async or streaming), and asserts the error type, that the message names the
field, and that the emulator saw no request at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.tools import FunctionTool

from cache_integrations import ConfigurationError, InvalidRequestError
from cache_integrations.langchain import ChatGemini, ChatGLM
from cache_integrations.llama_index import GLM, Gemini
from cache_integrations.testing import Emulator

GLM_URL = "http://emulator/api/paas/v4"
GEMINI_URL = "http://emulator/v1beta"
SECRET = "sk-emulated-secret-0123456789"
LONE = "\ud800"


def _clients(emu: Emulator) -> dict[str, Any]:
    transport = emu.transport()
    return {
        "http_client": httpx.Client(transport=transport),
        "http_async_client": httpx.AsyncClient(transport=transport),
    }


def lc_glm(emu: Emulator, **kwargs: Any) -> ChatGLM:
    return ChatGLM(api_key=SECRET, base_url=GLM_URL, **_clients(emu), **kwargs)


def lc_gemini(emu: Emulator, **kwargs: Any) -> ChatGemini:
    kwargs.setdefault("cache_registry", "memory")
    kwargs.setdefault("cache_mode", "always")  # cache creation is a request too: it must not happen either
    return ChatGemini(api_key=SECRET, base_url=GEMINI_URL, **_clients(emu), **kwargs)


def li_glm(emu: Emulator, **kwargs: Any) -> GLM:
    return GLM(api_key=SECRET, base_url=GLM_URL, **_clients(emu), **kwargs)


def li_gemini(emu: Emulator, **kwargs: Any) -> Gemini:
    kwargs.setdefault("cache_registry", "memory")
    kwargs.setdefault("cache_mode", "always")
    return Gemini(api_key=SECRET, base_url=GEMINI_URL, **_clients(emu), **kwargs)


LC_MESSAGES = [SystemMessage("You are terse."), HumanMessage("Hello")]


def li_messages(text: str = "Hello") -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="You are terse."),
        ChatMessage(role=MessageRole.USER, content=text),
    ]


def _tool(name: str = "lookup", **function: Any) -> dict[str, Any]:
    spec = {"name": name, "description": "Look a thing up.", "parameters": {"type": "object", "properties": {}}}
    return {"type": "function", "function": {**spec, **function}}


def _weather(city: str) -> str:
    """The weather in a city."""
    return city


def _stream(llm: Any, *args: Any, **kwargs: Any) -> None:
    for _ in llm.stream(*args, **kwargs):
        pass


Row = tuple[str, Callable[[Emulator], Any], type[Exception], str]

ROWS: list[Row] = [
    # -- LangChain ChatGLM --------------------------------------------------------------------------
    ("lc-glm ctor temperature=5", lambda e: lc_glm(e, temperature=5), ConfigurationError, "temperature"),
    ("lc-glm ctor top_p=0", lambda e: lc_glm(e, top_p=0), ConfigurationError, "top_p"),
    ("lc-glm ctor max_tokens=0", lambda e: lc_glm(e, max_tokens=0), ConfigurationError, "max_tokens"),
    ("lc-glm ctor timeout=nan", lambda e: lc_glm(e, timeout=float("nan")), ConfigurationError, "timeout"),
    ("lc-glm ctor timeout=-1", lambda e: lc_glm(e, timeout=-1), ConfigurationError, "timeout"),
    ("lc-glm ctor base_ur", lambda e: lc_glm(e, base_ur="http://x"), ConfigurationError, "base_url"),
    (
        "lc-glm invoke temperature=9",
        lambda e: lc_glm(e).invoke(LC_MESSAGES, temperature=9),
        InvalidRequestError,
        "temperature",
    ),
    (
        "lc-glm bind max_tokens=0",
        lambda e: lc_glm(e).bind(max_tokens=0).invoke(LC_MESSAGES),
        InvalidRequestError,
        "max_tokens",
    ),
    (
        "lc-glm stream top_p=1.5",
        lambda e: _stream(lc_glm(e), LC_MESSAGES, top_p=1.5),
        InvalidRequestError,
        "top_p",
    ),
    (
        "lc-glm ainvoke temperature=inf",
        lambda e: asyncio.run(lc_glm(e).ainvoke(LC_MESSAGES, temperature=float("inf"))),
        InvalidRequestError,
        "temperature",
    ),
    (
        "lc-glm tool name with a space",
        lambda e: lc_glm(e).bind_tools([_tool("get weather")]).invoke(LC_MESSAGES),
        InvalidRequestError,
        "tools[0].name",
    ),
    (
        "lc-glm tool parameters not a dict",
        lambda e: lc_glm(e).bind_tools([_tool(parameters="notadict")]).invoke(LC_MESSAGES),
        InvalidRequestError,
        "tools[0].parameters",
    ),
    (
        "lc-glm tools bound per call, schema type string",
        lambda e: lc_glm(e).invoke(LC_MESSAGES, tools=[_tool(parameters={"type": "string"})]),
        InvalidRequestError,
        "tools[0].parameters",
    ),
    (
        "lc-glm lone surrogate in a message",
        lambda e: lc_glm(e).invoke([SystemMessage("rules"), HumanMessage(f"bad {LONE} text")]),
        InvalidRequestError,
        "messages[1].content",
    ),
    (
        "lc-glm lone surrogate in tool-call arguments",
        lambda e: lc_glm(e).invoke(
            [
                HumanMessage("look it up"),
                AIMessage("", tool_calls=[{"id": "call_1", "name": "lookup", "args": {"q": LONE}}]),
                HumanMessage("and?"),
            ]
        ),
        InvalidRequestError,
        "messages[1].tool_calls[0].arguments.q",
    ),
    # -- LangChain ChatGemini -----------------------------------------------------------------------
    ("lc-gemini ctor cache_ttl=nan", lambda e: lc_gemini(e, cache_ttl=float("nan")), ConfigurationError, "cache_ttl"),
    ("lc-gemini ctor cache_ttl=0", lambda e: lc_gemini(e, cache_ttl=0), ConfigurationError, "cache_ttl"),
    ("lc-gemini ctor temperature=2.5", lambda e: lc_gemini(e, temperature=2.5), ConfigurationError, "temperature"),
    ("lc-gemini ctor temprature", lambda e: lc_gemini(e, temprature=0.5), ConfigurationError, "temperature"),
    (
        "lc-gemini invoke top_p=1.01",
        lambda e: lc_gemini(e).invoke(LC_MESSAGES, top_p=1.01),
        InvalidRequestError,
        "top_p",
    ),
    (
        "lc-gemini bind max_tokens=-5",
        lambda e: lc_gemini(e).bind(max_tokens=-5).invoke(LC_MESSAGES),
        InvalidRequestError,
        "max_tokens",
    ),
    (
        "lc-gemini tool parameters a list",
        lambda e: lc_gemini(e).bind_tools([_tool(parameters=["a", "b"])]).invoke(LC_MESSAGES),
        InvalidRequestError,
        "tools[0].parameters",
    ),
    (
        "lc-gemini lone surrogate in a tool description",
        lambda e: lc_gemini(e).bind_tools([_tool(description=f"desc {LONE}")]).invoke(LC_MESSAGES),
        InvalidRequestError,
        "tools[0].description",
    ),
    (
        "lc-gemini lone surrogate in the system prompt (the cached prefix)",
        lambda e: lc_gemini(e).invoke([SystemMessage(f"rules {LONE}"), HumanMessage("hi")]),
        InvalidRequestError,
        "messages[0].content",
    ),
    # -- LlamaIndex GLM -----------------------------------------------------------------------------
    ("li-glm ctor temperature=1.5", lambda e: li_glm(e, temperature=1.5), ConfigurationError, "temperature"),
    ("li-glm ctor timeout=inf", lambda e: li_glm(e, timeout=float("inf")), ConfigurationError, "timeout"),
    ("li-glm ctor base_ur", lambda e: li_glm(e, base_ur="http://x"), ConfigurationError, "base_url"),
    ("li-glm ctor max_retries=-1", lambda e: li_glm(e, max_retries=-1), ConfigurationError, "max_retries"),
    (
        "li-glm chat temperature=-0.1",
        lambda e: li_glm(e).chat(li_messages(), temperature=-0.1),
        InvalidRequestError,
        "temperature",
    ),
    (
        "li-glm complete max_tokens=0",
        lambda e: li_glm(e).complete("Hello", max_tokens=0),
        InvalidRequestError,
        "max_tokens",
    ),
    (
        "li-glm stream_chat lone surrogate",
        lambda e: li_glm(e).stream_chat(li_messages(f"x{LONE}")),
        InvalidRequestError,
        "messages[1].content",
    ),
    (
        "li-glm chat tool name with a space",
        lambda e: li_glm(e).chat(li_messages(), tools=[_tool("get weather")]),
        InvalidRequestError,
        "tools[0].name",
    ),
    (
        "li-glm chat_with_tools tool name of 65 characters",
        lambda e: li_glm(e).chat_with_tools([FunctionTool.from_defaults(_weather, name="w" * 65)], "Hi"),
        InvalidRequestError,
        "tools[0].name",
    ),
    # -- LlamaIndex Gemini --------------------------------------------------------------------------
    ("li-gemini ctor cache_ttl=nan", lambda e: li_gemini(e, cache_ttl=float("nan")), ConfigurationError, "cache_ttl"),
    ("li-gemini ctor cache_ttl=inf", lambda e: li_gemini(e, cache_ttl=float("inf")), ConfigurationError, "cache_ttl"),
    ("li-gemini ctor top_p=2", lambda e: li_gemini(e, top_p=2), ConfigurationError, "top_p"),
    (
        "li-gemini chat top_p=2",
        lambda e: li_gemini(e).chat(li_messages(), top_p=2),
        InvalidRequestError,
        "top_p",
    ),
    (
        "li-gemini achat temperature=3",
        lambda e: asyncio.run(li_gemini(e).achat(li_messages(), temperature=3)),
        InvalidRequestError,
        "temperature",
    ),
    (
        "li-gemini astream_chat max_tokens=0",
        lambda e: asyncio.run(li_gemini(e).astream_chat(li_messages(), max_tokens=0)),
        InvalidRequestError,
        "max_tokens",
    ),
    (
        "li-gemini chat tools parameters schema type array",
        lambda e: li_gemini(e).chat(li_messages(), tools=[_tool(parameters={"type": "array"})]),
        InvalidRequestError,
        "tools[0].parameters",
    ),
    (
        "li-gemini lone surrogate in tool-call arguments",
        lambda e: li_gemini(e).chat(
            [
                ChatMessage(role=MessageRole.USER, content="look it up"),
                ChatMessage(
                    role=MessageRole.ASSISTANT,
                    blocks=[ToolCallBlock(tool_call_id="c1", tool_name="lookup", tool_kwargs={"q": LONE})],
                ),
                ChatMessage(
                    role=MessageRole.TOOL, blocks=[TextBlock(text="42")], additional_kwargs={"tool_call_id": "c1"}
                ),
            ],
            tools=[_tool()],
        ),
        InvalidRequestError,
        "messages[1].tool_calls[0].arguments.q",
    ),
]


def test_the_table_covers_both_frameworks_and_at_least_twenty_inputs() -> None:
    prefixes = {row[0].split(" ", 1)[0] for row in ROWS}
    assert prefixes == {"lc-glm", "lc-gemini", "li-glm", "li-gemini"}
    assert len(ROWS) >= 20


@pytest.mark.parametrize(("name", "action", "error", "field"), ROWS, ids=[r[0] for r in ROWS])
def test_invalid_input_is_rejected_before_any_request(
    name: str, action: Callable[[Emulator], Any], error: type[Exception], field: str
) -> None:
    emu = Emulator()
    with pytest.raises(error) as info:
        action(emu)
    message = str(info.value)
    assert field in message, message
    assert SECRET not in message and SECRET not in repr(info.value.__context__)
    assert emu.requests == []
    assert emu.counters.requests_total == 0
