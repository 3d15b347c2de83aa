"""GLM and Gemini as LlamaIndex LLMs against the emulator: instrumentation, usage, tools, input checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    AudioBlock,
    CacheControl,
    CachePoint,
    ChatMessage,
    ChatResponse,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool

from cache_integrations import ConfigurationError, InvalidRequestError
from cache_integrations.llama_index import GLM, CacheUsageHandler, Gemini
from cache_integrations.testing import Emulator

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import make_glm

USAGE_KEYS = {
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
}


def _prompt(question: str = "Review my function.") -> list[ChatMessage]:
    return [ChatMessage(role="system", content=LONG_SYSTEM_PROMPT), ChatMessage(role="user", content=question)]


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}, 21 C."


def get_time(zone: str) -> str:
    """Current time in a time zone."""
    return f"It is 10:00 in {zone}."


TOOLS = [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_time)]


class EventRecorder(BaseEventHandler):
    events: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatStartEvent, LLMChatEndEvent, LLMCompletionStartEvent, LLMCompletionEndEvent)):
            self.events.append(type(event).__name__)


@pytest.fixture
def recorder() -> Iterator[EventRecorder]:
    rec = EventRecorder()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(rec)
    try:
        yield rec
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not rec]


def test_base_llm_is_in_the_mro() -> None:
    # the check LlamaIndex's own integrations ship
    for cls in (GLM, Gemini):
        assert BaseLLM.__name__ in [b.__name__ for b in cls.__mro__]


def test_metadata_never_raises_and_knows_current_models(emu: Emulator) -> None:
    assert make_glm(emu, model="glm-4.6").metadata.context_window == 204_800
    assert make_glm(emu, model="glm-4.5-air").metadata.context_window == 131_072
    unknown = make_glm(emu, model="glm-99-experimental")
    meta = unknown.metadata
    assert meta.context_window == 131_072 and meta.model_name == "glm-99-experimental"
    assert meta.is_chat_model and meta.is_function_calling_model
    assert unknown.to_payload()["model_name"] == "glm-99-experimental"
    assert make_glm(emu, model="whatever", context_window=32_000, max_tokens=900).metadata.num_output == 900
    assert make_glm(emu, model="whatever", context_window=32_000).metadata.context_window == 32_000
    gem = Gemini(api_key="k", model="gemini-9-ultra", cache_registry="memory")
    assert gem.metadata.context_window == 1_048_576
    assert Gemini(api_key="k", model="gemini-2.5-pro", cache_registry="memory").metadata.context_window == 1_048_576
    # the payload never carries the key
    assert "sk-emulated" not in str(unknown.to_dict())


def test_a_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ZHIPUAI_API_KEY"):
        GLM()
    monkeypatch.setenv("ZHIPUAI_API_KEY", "from-env")
    assert GLM().api_key is not None


def _drain(result: Any) -> Any:
    if isinstance(result, Iterator):
        return list(result)[-1]
    return result


async def _adrain(result: Any) -> Any:
    result = await result
    if hasattr(result, "__aiter__"):
        return [chunk async for chunk in result][-1]
    return result


CALLS: dict[str, Callable[[GLM], Any]] = {
    "chat": lambda llm: _drain(llm.chat(_prompt())),
    "stream_chat": lambda llm: _drain(llm.stream_chat(_prompt())),
    "complete": lambda llm: _drain(llm.complete("Review my function.")),
    "stream_complete": lambda llm: _drain(llm.stream_complete("Review my function.")),
    "achat": lambda llm: asyncio.run(_adrain(llm.achat(_prompt()))),
    "astream_chat": lambda llm: asyncio.run(_adrain(llm.astream_chat(_prompt()))),
    "acomplete": lambda llm: asyncio.run(_adrain(llm.acomplete("Review my function."))),
    "astream_complete": lambda llm: asyncio.run(_adrain(llm.astream_complete("Review my function."))),
}


@pytest.mark.parametrize("method", list(CALLS))
def test_exactly_one_event_per_call(
    method: str, emu: Emulator, recorder: EventRecorder, usage: CacheUsageHandler
) -> None:
    counter = TokenCountingHandler()
    llm = make_glm(emu, callback_manager=CallbackManager([counter]))
    last = CALLS[method](llm)
    assert emu.counters.requests_total == 1
    kind = "Completion" if "complete" in method else "Chat"
    assert recorder.events == [f"LLM{kind}StartEvent", f"LLM{kind}EndEvent"]
    assert len(counter.llm_token_counts) == 1
    assert usage.total.calls == 1
    # the handlers read the provider's numbers, not a tokenizer estimate
    assert counter.prompt_llm_token_count == emu.counters.prompt_tokens == usage.total.input_tokens
    assert counter.completion_llm_token_count == emu.counters.completion_tokens
    assert last.raw["usage"]["prompt_tokens"] == emu.counters.prompt_tokens


def test_usage_is_normalized_and_never_in_the_message(glm: GLM, emu: Emulator) -> None:
    first = glm.chat(_prompt("q1"))
    second = glm.chat(_prompt("q2"))
    for reply in (first, second):
        assert set(reply.raw) == {"usage", "model", "provider", "id", "finish_reason", "prefix_fingerprint", "cache"}
        assert set(reply.raw["usage"]) >= USAGE_KEYS
        assert reply.additional_kwargs == reply.raw["usage"]
        assert reply.additional_kwargs is not reply.raw["usage"]
        assert not USAGE_KEYS & set(reply.message.additional_kwargs)
        assert reply.raw["provider"] == "zhipuai" and reply.raw["model"] == "glm-4.7"
        assert reply.raw["cache"] is None
    u = second.raw["usage"]
    assert first.raw["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert u["prompt_tokens_details"]["cached_tokens"] == u["cache_read_input_tokens"] > 1000
    assert u["prompt_tokens"] == emu.counters.prompt_tokens - first.raw["usage"]["prompt_tokens"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    # glm-4.7 thinks by default: reasoning is a ThinkingBlock and counted in the completion
    assert isinstance(second.message.blocks[0], ThinkingBlock)
    assert u["completion_tokens_details"]["reasoning_tokens"] > 0
    assert first.raw["prefix_fingerprint"] == second.raw["prefix_fingerprint"]


def test_stream_and_non_stream_usage_are_equal(glm: GLM) -> None:
    glm.chat(_prompt())  # warm the cache
    invoked = glm.chat(_prompt())
    chunks = list(glm.stream_chat(_prompt()))

    async def astream() -> list[ChatResponse]:
        return [c async for c in await glm.astream_chat(_prompt())]

    achunks = asyncio.run(astream())
    for stream in (chunks, achunks):
        *deltas, final = stream
        assert deltas and all(c.raw is None and not USAGE_KEYS & set(c.additional_kwargs) for c in deltas)
        assert final.raw["usage"] == invoked.raw["usage"] and final.additional_kwargs == invoked.additional_kwargs
        assert final.message.blocks == invoked.message.blocks
        assert "".join(c.delta or "" for c in stream) == invoked.message.content
        assert final.raw["prefix_fingerprint"] == invoked.raw["prefix_fingerprint"]
    assert any(c.additional_kwargs.get("thinking_delta") for c in chunks)


def test_completion_responses_carry_usage(glm: GLM) -> None:
    glm.complete("Explain prefix caching in one line.")
    reply = glm.complete("Explain prefix caching in one line.")
    assert reply.raw["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert reply.additional_kwargs["cache_read_input_tokens"] > 0
    streamed = list(glm.stream_complete("Explain prefix caching in one line."))
    assert streamed[-1].raw["usage"] == reply.raw["usage"] and streamed[-1].text == reply.text


def test_tool_round_trip_keeps_calls_ids_and_reasoning(glm: GLM, emu: Emulator) -> None:
    history = [ChatMessage(role="system", content=LONG_SYSTEM_PROMPT)]
    first = glm.chat_with_tools(TOOLS, user_msg="Use get_weather for Paris.", chat_history=history)
    calls = glm.get_tool_calls_from_response(first)
    assert [c.tool_name for c in calls] == ["get_weather"] and calls[0].tool_kwargs == {"city": "Paris"}
    assert calls[0].tool_id and isinstance(first.message.blocks[-1], ToolCallBlock)
    follow = [
        *history,
        ChatMessage(role="user", content="Use get_weather for Paris."),
        first.message,
        ChatMessage(role="tool", content=get_weather("Paris"), additional_kwargs={"tool_call_id": calls[0].tool_id}),
    ]
    final = glm.chat_with_tools(TOOLS, chat_history=follow)
    assert glm.get_tool_calls_from_response(final, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="tool call"):
        glm.get_tool_calls_from_response(final)
    sent = emu.requests[-1].body["messages"]
    assert sent[2]["tool_calls"][0]["id"] == calls[0].tool_id
    assert sent[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert sent[2]["reasoning_content"] == first.message.blocks[0].content  # type: ignore[union-attr]
    assert sent[3] == {"role": "tool", "content": "Sunny in Paris, 21 C.", "tool_call_id": calls[0].tool_id}
    assert final.raw["usage"]["cache_read_input_tokens"] > 1000  # the first turn is a cached prefix
    # the legacy OpenAI shape in additional_kwargs is the same conversation on the wire
    legacy = first.message.model_copy(
        update={
            "blocks": [b for b in first.message.blocks if not isinstance(b, ToolCallBlock)],
            "additional_kwargs": {
                "tool_calls": [
                    {
                        "id": calls[0].tool_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ]
            },
        }
    )
    glm.chat_with_tools(TOOLS, chat_history=[*follow[:2], legacy, follow[3]])
    assert emu.requests[-1].body == emu.requests[-2].body


def test_tool_choice_and_parallel_calls(emu: Emulator) -> None:
    glm = make_glm(emu)
    assert glm._prepare_chat_with_tools(TOOLS, user_msg="hi", tool_required=True)["tool_choice"] == "auto"
    gem = Gemini(api_key="k", cache_registry="memory")
    prepared = gem._prepare_chat_with_tools(TOOLS, user_msg="hi", tool_required=True)
    assert prepared["tool_choice"] == "required" and [t.name for t in prepared["tools"]] == ["get_weather", "get_time"]
    assert glm._prepare_chat_with_tools([], user_msg="hi")["tools"] is None
    glm.chat_with_tools(TOOLS, user_msg="What now?", tool_choice="get_time")
    assert emu.requests[-1].body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    two = ChatResponse(
        message=ChatMessage(
            role="assistant",
            blocks=[
                TextBlock(text="Calling both."),
                ToolCallBlock(tool_call_id="a", tool_name="get_weather", tool_kwargs={"city": "Rome"}),
                ToolCallBlock(tool_call_id="b", tool_name="get_time", tool_kwargs='{"zone": "CET"}'),
            ],
        )
    )
    two.message.additional_kwargs["tool_calls"] = [{"id": "a"}, {"id": "b"}]
    single = glm._validate_chat_with_tools_response(two, TOOLS, allow_parallel_tool_calls=False)
    assert [c.tool_id for c in glm.get_tool_calls_from_response(single)] == ["a"]
    assert single.message.additional_kwargs["tool_calls"] == [{"id": "a"}]
    both = glm.get_tool_calls_from_response(glm._validate_chat_with_tools_response(two, TOOLS, True))
    assert [c.tool_kwargs for c in both] == [{"city": "Rome"}, {"zone": "CET"}]
    assert len(two.message.blocks) == 3 and len(two.message.additional_kwargs["tool_calls"]) == 2  # untouched


def test_glm_accepts_cache_points_and_sends_no_trace_of_them(glm: GLM, emu: Emulator) -> None:
    point = CachePoint(cache_control=CacheControl(type="ephemeral", ttl="1h"))
    marked = [
        ChatMessage(role="system", blocks=[TextBlock(text=LONG_SYSTEM_PROMPT), point]),
        ChatMessage(role="user", content="q", additional_kwargs={"cache_control": {"type": "ephemeral"}}),
    ]
    plain = [ChatMessage(role="system", content=LONG_SYSTEM_PROMPT), ChatMessage(role="user", content="q")]
    glm.chat(marked)
    glm.chat(plain)
    assert emu.requests[0].body == emu.requests[1].body
    assert "cache" not in str(emu.requests[0].body).lower()


def test_images_by_url_and_base64(glm: GLM, emu: Emulator) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    glm.chat(
        [
            ChatMessage(
                role="user",
                blocks=[
                    TextBlock(text="Compare these."),
                    ImageBlock(url="https://example.com/a.png"),
                    ImageBlock(image=png, image_mimetype="image/png"),
                ],
            )
        ]
    )
    parts = emu.requests[-1].body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Compare these."}
    assert parts[1]["image_url"]["url"] == "https://example.com/a.png"
    assert parts[2]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_the_callers_messages_are_never_mutated(glm: GLM) -> None:
    messages = [
        ChatMessage(
            role="system",
            blocks=[TextBlock(text=LONG_SYSTEM_PROMPT), CachePoint(cache_control=CacheControl(type="ephemeral"))],
        ),
        ChatMessage(role="user", content="Use get_time for CET.", additional_kwargs={"cache_control": {"type": "x"}}),
    ]
    before = [m.model_dump() for m in messages]
    glm.chat(messages)
    list(glm.stream_chat(messages))
    reply = glm.chat_with_tools(TOOLS, chat_history=messages)
    glm.complete("x")
    follow = [*messages, reply.message]
    follow_before = [m.model_dump() for m in follow]
    glm.chat_with_tools(
        TOOLS,
        chat_history=[
            *follow,
            ChatMessage(
                role="tool",
                content="10:00",
                additional_kwargs={"tool_call_id": glm.get_tool_calls_from_response(reply)[0].tool_id},
            ),
        ],
    )
    assert [m.model_dump() for m in messages] == before
    assert [m.model_dump() for m in follow] == follow_before


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "at least one message"),
        (
            [ChatMessage(role="user", blocks=[AudioBlock(audio=b"RIFF", format="wav")])],
            r"messages\[0\]\.content\[0\]: GLM \(glm-4\.7\) does not accept audio parts",
        ),
        (
            [ChatMessage(role="user", content="hi"), ChatMessage(role="tool", content="42")],
            r"messages\[1\].*tool_call_id",
        ),
        (
            [ChatMessage(role="user", blocks=[ToolCallBlock(tool_name="f", tool_kwargs={})])],
            r"messages\[0\]\.blocks\[0\].*ToolCallBlock.*user",
        ),
        ([{"role": "user", "content": "hi"}], r"messages\[0\].*ChatMessage"),
    ],
)
def test_bad_input_raises_clear_errors_before_any_request(
    glm: GLM, emu: Emulator, messages: list[Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        glm.chat(messages)
    with pytest.raises(InvalidRequestError, match=match):
        glm.stream_chat(messages)
    assert emu.counters.requests_total == 0


def test_bad_tool_choice_and_tools_raise(glm: GLM, emu: Emulator) -> None:
    with pytest.raises(InvalidRequestError, match="tool_choice"):
        glm.chat_with_tools(TOOLS, user_msg="hi", tool_choice="no_such_tool")
    with pytest.raises(InvalidRequestError, match="tools"):
        glm.chat(_prompt(), tools=[object()])
    assert emu.counters.requests_total == 0


class Song(BaseModel):
    title: str
    length_seconds: int


def test_structured_prediction_through_tools(glm: GLM, emu: Emulator) -> None:
    prompt = PromptTemplate("Write a song about {topic}.")
    song = glm.structured_predict(Song, prompt, topic="cats")
    assert isinstance(song, Song)
    streamed = list(glm.stream_structured_predict(Song, prompt, topic="cats"))
    assert isinstance(streamed[-1], BaseModel) and streamed[-1].model_dump() == song.model_dump()
    assert all("tools" in r.body for r in emu.requests)
