"""GLM response, stream and error parsing on bodies shaped like GLM's recorded responses."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from cache_integrations import BadRequestError, InsufficientBalanceError, RateLimitError, ServerError, Usage
from cache_integrations.providers.glm import GLMProvider, StreamParser, parse_response

TOOL_RESPONSE = {
    "choices": [
        {
            "finish_reason": "tool_calls",
            "index": 0,
            "message": {
                "content": "I'll check the weather in Florence, Italy for you.",
                "reasoning_content": "The user wants the weather.",
                "role": "assistant",
                "tool_calls": [
                    {
                        "function": {"arguments": '{"location":"Florence,Italy"}', "name": "weather"},
                        "id": "call_-7807249954186984837",
                        "index": 0,
                        "type": "function",
                    }
                ],
            },
        }
    ],
    "created": 1773349384,
    "id": "202603130503035652f6eb725d4b48",
    "model": "glm-4.7-flash",
    "object": "chat.completion",
    "request_id": "202603130503035652f6eb725d4b48",
    "usage": {
        "completion_tokens": 88,
        "completion_tokens_details": {"reasoning_tokens": 62},
        "prompt_tokens": 173,
        "prompt_tokens_details": {"cached_tokens": 43},
        "total_tokens": 261,
    },
}


def test_parse_tool_call_response() -> None:
    r = parse_response(TOOL_RESPONSE, "fp")
    assert r.finish_reason == "tool_calls" and r.model == "glm-4.7-flash"
    assert r.message.reasoning == "The user wants the weather."
    (call,) = r.message.tool_calls
    assert (call.id, call.name, dict(call.arguments)) == (
        "call_-7807249954186984837",
        "weather",
        {"location": "Florence,Italy"},
    )
    assert r.usage == Usage(input_tokens=173, cache_read_tokens=43, output_tokens=88, reasoning_tokens=62)
    assert r.prefix_fingerprint == "fp"


def test_malformed_tool_arguments_are_kept_not_lost() -> None:
    body = json.loads(json.dumps(TOOL_RESPONSE))
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"location": "Flor'
    (call,) = parse_response(body).message.tool_calls
    assert call.error and call.raw_arguments == '{"location": "Flor' and dict(call.arguments) == {}


def _chunk(
    delta: dict[str, object] | None, *, finish: str | None = None, usage: dict[str, object] | None = None
) -> str:
    event: dict[str, object] = {"id": "2026", "created": 1, "object": "chat.completion.chunk", "model": "glm-4.7"}
    event["choices"] = (
        [] if delta is None else [{"index": 0, "delta": delta, **({"finish_reason": finish} if finish else {})}]
    )
    if usage is not None:
        event["usage"] = usage
    return json.dumps(event)


USAGE = {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 7}}


@pytest.mark.parametrize("placement", ["finish_chunk", "separate_chunk"])
def test_stream_usage_is_reported_once_on_the_final_chunk(placement: str) -> None:
    events = [
        _chunk({"role": "assistant", "reasoning_content": "thinking"}),
        _chunk({"role": "assistant", "content": "Hel"}),
        _chunk({"role": "assistant", "content": "lo"}),
    ]
    if placement == "finish_chunk":
        events.append(_chunk({"role": "assistant", "content": ""}, finish="stop", usage=USAGE))
    else:
        events += [_chunk({"role": "assistant", "content": ""}, finish="stop"), _chunk(None, usage=USAGE)]
    events.append("[DONE]")
    parser = StreamParser("fp")
    chunks = [c for e in events if (c := parser.feed(e)) is not None]
    final = parser.finish()
    assert "".join(c.text for c in chunks) == "Hello" and chunks[0].reasoning == "thinking"
    assert all(c.usage is None for c in chunks)
    assert final.final and final.finish_reason == "stop" and final.model == "glm-4.7"
    assert final.usage == Usage(input_tokens=13, cache_read_tokens=7, output_tokens=5)


def test_stream_without_prompt_tokens_details_reports_zero() -> None:
    parser = StreamParser()
    parser.feed(
        _chunk({"content": ""}, finish="stop", usage={"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10})
    )
    assert parser.finish().usage == Usage(input_tokens=9, output_tokens=1)


def test_streamed_tool_calls_arrive_as_chunks() -> None:
    parser = StreamParser()
    call = {"id": "call_1", "index": 1, "type": "function", "function": {"name": "add", "arguments": '{"a":2,"b":3}'}}
    chunk = parser.feed(_chunk({"tool_calls": [call]}))
    assert chunk is not None
    (tc,) = chunk.tool_call_chunks
    assert (tc.index, tc.id, tc.name, tc.arguments) == (None, "call_1", "add", '{"a":2,"b":3}')


PROVIDER = GLMProvider(api_key=SecretStr("sk-secret-value"))


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "retryable"),
    [
        (
            400,
            {"error": {"code": "1214", "message": "The messages parameter is illegal."}},
            BadRequestError,
            "1214",
            False,
        ),
        (400, {"code": "1210", "message": "Invalid API parameter"}, BadRequestError, "1210", False),
        (
            429,
            {"error": {"code": "1113", "message": "Insufficient balance"}, "request_id": "20260314"},
            InsufficientBalanceError,
            "1113",
            False,
        ),
        (429, {"error": {"code": "1302", "message": "Rate limit reached"}}, RateLimitError, "1302", True),
        (503, {"error": {"code": "1234", "message": "Network error"}}, ServerError, "1234", True),
    ],
)
def test_error_bodies_map_to_typed_errors(
    status: int, body: dict[str, object], cls: type[Exception], code: str, retryable: bool
) -> None:
    err = PROVIDER.error_from_response(status, {}, json.dumps(body).encode())
    assert type(err) is cls and err.status_code == status and err.code == code
    assert PROVIDER.is_retryable(err) is retryable
    assert "sk-secret-value" not in str(err) and "sk-secret-value" not in repr(PROVIDER)


def test_non_json_error_body_still_maps() -> None:
    err = PROVIDER.error_from_response(502, {}, b"<html>Bad gateway</html>")
    assert isinstance(err, ServerError) and "Bad gateway" in err.message


def test_incremental_tool_call_pieces_keep_their_index() -> None:
    parser = StreamParser()
    first = parser.feed(
        _chunk({"tool_calls": [{"id": "call_2", "index": 0, "function": {"name": "add", "arguments": '{"a"'}}]})
    )
    rest = parser.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":2}"}}]}))
    assert first is not None and rest is not None
    assert first.tool_call_chunks[0].index == 0 and rest.tool_call_chunks[0].index == 0
