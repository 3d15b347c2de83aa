"""Broken or hostile answers become `MalformedResponseError` (a `ProviderError`) naming the problem
with a short excerpt of the body, never a JSONDecodeError, AttributeError or ValueError; for GLM and
Gemini, sync and async, invoke and stream. And the Gemini stream's usage is the last chunk's, whole.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.errors import MalformedResponseError, ProviderError
from cache_integrations.messages import ChatRequest, Message, StreamChunk
from cache_integrations.providers import GeminiProvider, GLMProvider, HTTPProvider
from cache_integrations.providers.gemini import StreamParser
from cache_integrations.usage import Usage

KEY = SecretStr("hostile-test-key-0123456789")
MODES = ["invoke", "ainvoke", "stream", "astream"]


def _provider(kind: str, status: int, body: bytes, content_type: str) -> HTTPProvider:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    transport = httpx.MockTransport(answer)
    clients: dict[str, Any] = {
        "http_client": httpx.Client(transport=transport),
        "async_http_client": httpx.AsyncClient(transport=transport),
    }
    if kind == "glm":
        return GLMProvider(api_key=KEY, base_url="http://glm.test/api/paas/v4", max_retries=0, **clients)
    return GeminiProvider(api_key=KEY, base_url="http://gemini.test/v1beta", max_retries=0, **clients)


def _call(provider: HTTPProvider, mode: str) -> Any:
    model = "glm-4.7" if isinstance(provider, GLMProvider) else "gemini-2.5-flash"
    request = ChatRequest(model, (Message("user", "hello"),))
    chat_provider: Any = provider

    async def consume() -> Any:
        if mode == "ainvoke":
            return await chat_provider.achat(request)
        return [chunk async for chunk in chat_provider.astream(request)]

    if mode == "invoke":
        return chat_provider.chat(request)
    if mode == "stream":
        return list(chat_provider.stream(request))
    return asyncio.run(consume())


def _expect_malformed(provider: HTTPProvider, mode: str, *fragments: str) -> MalformedResponseError:
    with pytest.raises(MalformedResponseError) as info:
        _call(provider, mode)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ProviderError) and info.value.status_code == 200
    assert len(message) < 420  # the problem plus a ~200-character excerpt, not the whole body
    return info.value


# ----------------------------------------------------------------------------------- whole bodies

BODIES = {
    "truncated JSON": (b'{"choices": [{"message": {"content": "hel', "application/json", "not valid JSON"),
    "an HTML page": (
        b"<html><head><title>502 Bad Gateway</title></head><body>" + b"nginx " * 200 + b"</body></html>",
        "text/html",
        "content-type 'text/html'",
    ),
    "null": (b"null", "application/json", "expected a JSON object, got null"),
    "a list": (b'[{"candidates": []}]', "application/json", "expected a JSON object, got a list"),
    "a string": (b'"ok"', "application/json", "expected a JSON object, got a string"),
    "bytes that are not UTF-8": (b"\xff\xfe{\x00}", "application/json", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BODIES))
@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("kind", ["glm", "gemini"])
def test_a_body_that_is_not_a_json_object_is_malformed(kind: str, mode: str, case: str) -> None:
    body, content_type, fragment = BODIES[case]
    error = _expect_malformed(_provider(kind, 200, body, content_type), mode, fragment)
    assert repr(body[:20].decode("utf-8", "replace"))[1:-1][:10] in str(error)  # the excerpt quotes the body


SHAPES = {
    "glm": [
        ({}, "the response has no choices"),
        ({"choices": "none"}, "choices is a string, expected a list"),
        ({"choices": [None]}, "choices[0] is null, expected an object"),
        ({"choices": [{"message": "hi"}]}, "choices[0].message is a string, expected an object"),
        ({"choices": [{"message": {"content": 42}}]}, "choices[0].message.content is a number, expected a string"),
        ({"choices": [{"message": {"tool_calls": {"id": 1}}}]}, "choices[0].message.tool_calls is dict"),
        ({"choices": [{"message": {"tool_calls": ["x"]}}]}, "choices[0].message.tool_calls[0] is a string"),
        ({"choices": [{"message": {}, "finish_reason": 1}]}, "choices[0].finish_reason is a number"),
    ],
    "gemini": [
        ({}, "the response has no candidates"),
        ({"candidates": {"0": {}}}, "candidates is dict, expected a list"),
        ({"candidates": ["x"]}, "candidates[0] is a string, expected an object"),
        ({"candidates": [{"content": []}]}, "candidates[0].content is a list, expected an object"),
        ({"candidates": [{"content": {"parts": [5]}}]}, "candidates[0].content.parts[0] is a number"),
        ({"candidates": [{"content": {"parts": [{"text": ["a"]}]}}]}, "parts[0].text is a list, expected a string"),
        (
            {"candidates": [{"content": {"parts": [{"functionCall": "f"}]}}]},
            "parts[0].functionCall is a string, expected an object",
        ),
        ({"candidates": [{"finishReason": 7}]}, "candidates[0].finishReason is a number"),
    ],
}


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize(
    ("kind", "body", "fragment"), [(kind, body, fragment) for kind, cases in SHAPES.items() for body, fragment in cases]
)
def test_json_of_the_wrong_shape_is_malformed(kind: str, body: Any, fragment: str, mode: str) -> None:
    _expect_malformed(_provider(kind, 200, json.dumps(body).encode(), "application/json"), mode, fragment)


# ----------------------------------------------------------------------------------------- streams

GLM_OK = {"id": "c1", "model": "glm-4.7", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
GEMINI_OK = {"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}]}

STREAMS = {
    "an event that is not JSON": ("data: {not json\n\n", "a stream event is not valid JSON"),
    "a truncated event": ('data: {"choices": [{"delta": {"con\n\n', "a stream event is not valid JSON"),
    "a null event": ("data: null\n\n", "a stream event is null, not a JSON object"),
    "a list event": ("data: [1, 2]\n\n", "a stream event is a list, not a JSON object"),
}
SHAPED_STREAMS = {
    "glm": ('data: {"choices": [{"delta": "hi"}]}\n\n', "choices[0].delta is a string, expected an object"),
    "gemini": ('data: {"candidates": [{"content": {"parts": "hi"}}]}\n\n', "content.parts is a string"),
}


def _sse(kind: str, bad: str) -> bytes:
    first = json.dumps(GLM_OK if kind == "glm" else GEMINI_OK)
    return f"data: {first}\n\n{bad}".encode()


@pytest.mark.parametrize("case", [*STREAMS, "a well-formed event of the wrong shape"])
@pytest.mark.parametrize("mode", ["stream", "astream"])
@pytest.mark.parametrize("kind", ["glm", "gemini"])
def test_an_invalid_stream_event_is_malformed(kind: str, mode: str, case: str) -> None:
    bad, fragment = STREAMS[case] if case in STREAMS else SHAPED_STREAMS[kind]
    provider = _provider(kind, 200, _sse(kind, bad), "text/event-stream")
    _expect_malformed(provider, mode, fragment)


@pytest.mark.parametrize("mode", ["stream", "astream"])
@pytest.mark.parametrize("kind", ["glm", "gemini"])
def test_an_html_page_instead_of_a_stream_is_malformed(kind: str, mode: str) -> None:
    page = b"<html><body>Please log in to the captive portal</body></html>"
    provider = _provider(kind, 200, page, "text/html; charset=utf-8")
    _expect_malformed(provider, mode, "expected an event stream", "text/html", "captive portal")


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_json_error_instead_of_a_stream_is_the_typed_provider_error(mode: str) -> None:
    body = json.dumps({"error": {"code": "1214", "message": "messages: invalid"}}).encode()
    with pytest.raises(ProviderError) as info:
        _call(_provider("glm", 200, body, "application/json"), mode)
    assert not isinstance(info.value, MalformedResponseError)
    assert info.value.code == "1214" and "messages: invalid" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["glm", "gemini"])
def test_malformed_answers_are_not_retried(kind: str, mode: str) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=b"<html>oops</html>", headers={"content-type": "text/html"})

    transport = httpx.MockTransport(answer)
    clients: dict[str, Any] = {
        "http_client": httpx.Client(transport=transport),
        "async_http_client": httpx.AsyncClient(transport=transport),
    }
    provider: HTTPProvider = (
        GLMProvider(api_key=KEY, base_url="http://glm.test/v4", max_retries=3, **clients)
        if kind == "glm"
        else GeminiProvider(api_key=KEY, base_url="http://gemini.test/v1beta", max_retries=3, **clients)
    )
    with pytest.raises(MalformedResponseError):
        _call(provider, mode)
    assert len(calls) == 1


# ------------------------------------------------------------------------------ Gemini stream usage


def _feed(events: list[dict[str, Any]]) -> StreamChunk:
    parser = StreamParser(model="gemini-3-flash-preview")
    for event in events:
        parser.feed(json.dumps(event))
    return parser.finish()


def test_gemini_stream_usage_is_the_last_chunks_as_a_whole() -> None:
    """Google's SSE shape (gemini-3-flash with built-in tools): an intermediate chunk reports a
    provisional candidatesTokenCount; the final chunk omits it (no candidate tokens billed beyond
    the thoughts) and its totals are authoritative. A field-by-field merge kept the stale 99 and
    reported 186 total tokens against Google's 165."""
    events = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Searching"}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 66, "candidatesTokenCount": 99, "totalTokenCount": 165},
            "modelVersion": "gemini-3-flash-preview",
            "responseId": "abc",
        },
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "."}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 66, "totalTokenCount": 165, "thoughtsTokenCount": 99},
            "modelVersion": "gemini-3-flash-preview",
            "responseId": "abc",
        },
    ]
    final = _feed(events)
    assert final.usage == Usage(input_tokens=66, output_tokens=99, reasoning_tokens=99)
    assert final.usage is not None and final.usage.total_tokens == 165
    assert final.raw_usage == events[-1]["usageMetadata"]


def test_gemini_stream_keeps_only_the_cached_count_from_an_earlier_chunk() -> None:
    """Vertex AI (langchainjs PR #9912): intermediate chunks carry only cachedContentTokenCount and
    trafficType; the final one may omit the cached count, which is then kept. Nothing else is."""
    events = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "A"}]}}],
            "usageMetadata": {"cachedContentTokenCount": 4000, "trafficType": "ON_DEMAND", "candidatesTokenCount": 7},
        },
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5000, "candidatesTokenCount": 2, "totalTokenCount": 5002},
        },
    ]
    final = _feed(events)
    assert final.usage == Usage(input_tokens=5000, cache_read_tokens=4000, output_tokens=2)


def test_gemini_stream_without_valid_usage_reports_it_unknown() -> None:
    done = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}
    assert _feed([done]).usage is None
    negative = {**done, "usageMetadata": {"promptTokenCount": -5, "candidatesTokenCount": 1}}
    assert _feed([negative]).usage is None
