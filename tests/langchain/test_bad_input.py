"""Bad input raises a clear error naming the problem, before any request leaves the process."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, ChatMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage

from cache_integrations import ConfigurationError, InvalidRequestError
from cache_integrations.langchain import ChatGLM
from cache_integrations.langchain._convert import messages_from_langchain


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a request was sent: {request.method} {request.url}")


@pytest.fixture
def llm() -> ChatGLM:
    transport = httpx.MockTransport(_no_network)
    return ChatGLM(api_key="k", http_client=httpx.Client(transport=transport))


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "at least one message is required"),
        ([ChatMessage(role="wizard", content="hi")], r"messages\[0\]: unknown role 'wizard'; allowed roles"),
        ([FunctionMessage(name="f", content="x")], r"messages\[0\]: unsupported message type FunctionMessage"),
        (
            [HumanMessage(content=[{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])],
            r"messages\[0\]\.content\[0\]: GLM \(glm-4\.7\) does not accept audio parts",
        ),
        (
            [HumanMessage(content=[{"type": "audio", "base64": "AAA", "mime_type": "audio/wav"}])],
            r"messages\[0\]\.content\[0\]: the base64 data does not decode",
        ),
        (
            [HumanMessage(content=[{"type": "hologram", "url": "https://x/y"}])],
            r"messages\[0\]\.content\[0\]: content block type 'hologram' is not supported in a user message",
        ),
        (
            [SystemMessage(content=[{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])],
            r"messages\[0\]: GLM accepts images only in user messages",
        ),
        ([ToolMessage(content="42", tool_call_id="")], r"messages\[0\]: a tool message needs the tool_call_id"),
    ],
)
def test_bad_messages(llm: ChatGLM, messages: list[Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        llm.invoke(messages)


def test_more_than_one_stop_sequence(llm: ChatGLM) -> None:
    with pytest.raises(InvalidRequestError, match=r"stop: GLM accepts at most one stop sequence, got 2"):
        llm.invoke("hi", stop=["a", "b"])


def test_tool_schema_that_does_not_serialize(llm: ChatGLM) -> None:
    bad = {"type": "function", "function": {"name": "bad", "parameters": {"type": "object", "default": {1, 2}}}}
    with pytest.raises(InvalidRequestError, match=r"tools\['bad'\]\.parameters is not JSON-serializable"):
        llm.bind_tools([bad])


def test_unknown_tool_choice(llm: ChatGLM) -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    with pytest.raises(InvalidRequestError, match=r"tool_choice: 'multiply' is not .* bound tools \['add'\]"):
        llm.bind_tools([add], tool_choice="multiply")


def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    with pytest.raises(
        ValueError, match=r"ChatGLM needs an API key: pass api_key=\.\.\. or set ZHIPUAI_API_KEY"
    ) as info:
        ChatGLM()
    assert isinstance(info.value.errors()[0]["ctx"]["error"], ConfigurationError)  # type: ignore[attr-defined]


def test_secret_never_in_repr_or_dump() -> None:
    m = ChatGLM(api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(m) and "sk-very-secret" not in str(m.model_dump())
    assert "sk-very-secret" not in repr(m.client)


def test_conversion_keeps_everything() -> None:
    ai = AIMessage(
        content="",
        additional_kwargs={"reasoning_content": "because"},
        tool_calls=[{"name": "add", "args": {"a": 1}, "id": "call_1", "type": "tool_call"}],
    )
    out = messages_from_langchain(
        [
            SystemMessage(content=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]),
            HumanMessage(
                content=[{"type": "text", "text": "look"}, {"type": "image", "url": "https://x/a.png"}], name="bob"
            ),
            ai,
            ToolMessage(content="2", tool_call_id="call_1"),
        ]
    )
    system, user, assistant, tool = out
    assert system.content == "S" and system.cache_point
    assert user.name == "bob" and len(user.content) == 2
    assert assistant.reasoning == "because" and assistant.tool_calls[0].arguments == {"a": 1}
    assert tool.tool_call_id == "call_1" and tool.content == "2"
