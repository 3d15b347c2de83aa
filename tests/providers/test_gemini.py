"""Gemini: request encoding, response/stream/error parsing on bodies shaped like Google's recorded
answers, and the provider end to end against the in-process emulator (generate, stream, countTokens,
the cachedContents lifecycle)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.errors import (
    AuthenticationError,
    BadRequestError,
    CachedContentNotFoundError,
    CachedContentTooSmallError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from cache_integrations.messages import (
    ChatRequest,
    ForcedTool,
    ImagePart,
    Message,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolDefinition,
)
from cache_integrations.providers import RetryPolicy
from cache_integrations.providers.gemini import (
    GEMINI_BASE_URL,
    GeminiProvider,
    StreamParser,
    cache_payload,
    cached_content_name,
    encode_cache_create,
    encode_generate,
    format_ttl,
    parse_response,
    parse_timestamp,
    synthesize_call_id,
    usage_from_gemini,
)
from cache_integrations.testing import Emulator, FakeClock
from cache_integrations.testing.faults import gemini_unavailable
from cache_integrations.usage import Usage

from ..wire import created_caches, gemini_cached, model_usages

MODEL = "gemini-2.5-flash"
KEY = "test-gemini-secret-key-123"
EMULATOR_URL = "http://emulator/v1beta"
LONG_DOC = "Paris is the capital of France. The Eiffel Tower is in Paris. " * 120  # ~1680 emulator tokens
SYSTEM = Message("system", "You are a geography expert. Be concise.")
WEATHER = ToolDefinition(
    "weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK_TOOL = ToolDefinition("clock", "Current time in a timezone.", {"type": "object", "properties": {}})


def body_of(data: bytes) -> dict[str, Any]:
    parsed = json.loads(data)
    assert isinstance(parsed, dict)
    return parsed


def conversation(question: str = "What is the capital of France?", **kwargs: Any) -> ChatRequest:
    """System prompt, a long document, one exchange, and a new question (tools bound, not called)."""
    messages = (SYSTEM, Message("user", LONG_DOC), Message("assistant", "Noted."), Message("user", question))
    return ChatRequest(MODEL, messages, tools=(WEATHER,), tool_choice="none", **kwargs)


def tool_round_trip() -> ChatRequest:
    calls = (
        ToolCall("call_a", "weather", {"city": "Paris"}, signature="c2lnLWE="),
        ToolCall("call_b", "clock", {}),
    )
    return ChatRequest(
        MODEL,
        (
            SYSTEM,
            Message("user", "Weather and time in Paris?"),
            Message("assistant", "Let me look.", tool_calls=calls, reasoning="I should call both tools."),
            Message("tool", '{"temp_c": 21, "sky": "clear"}', tool_call_id="call_a"),
            Message("tool", "12:00", tool_call_id="call_b"),
            Message("user", "Thanks. Anything else?"),
        ),
        tools=(WEATHER, CLOCK_TOOL),
    )


# ------------------------------------------------------------------------------------ response parsing

# Shaped like the recorded gemini-2.5-flash answer to a generateContent call that used a cachedContent.
CACHED_RESPONSE: dict[str, Any] = {
    "candidates": [{"content": {"parts": [{"text": "Paris."}], "role": "model"}, "finishReason": "STOP", "index": 0}],
    "modelVersion": "gemini-2.5-flash",
    "responseId": "_VQYaqvRGbW6qtsPg4TDoAg",
    "usageMetadata": {
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 3512}],
        "cachedContentTokenCount": 3512,
        "candidatesTokenCount": 2,
        "promptTokenCount": 3520,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3520}],
        "serviceTier": "standard",
        "thoughtsTokenCount": 42,
        "totalTokenCount": 3564,
    },
}

FUNCTION_CALL_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Checking the tree shape first.", "thought": True},
                    {
                        "functionCall": {"args": {"tree": {"label": "root", "children": []}}, "name": "record"},
                        "thoughtSignature": "Cv0EARFNMg+lgcC+jVSOOrWCpnKR6RoQ==",
                    },
                    {"functionCall": {"args": {"value": "hello"}, "name": "record"}},
                ],
                "role": "model",
            },
            "finishMessage": "Model generated function call(s).",
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "modelVersion": "gemini-2.5-flash",
    "responseId": "XX1raozWNsW2qtsPyaOXmAQ",
    "usageMetadata": {
        "candidatesTokenCount": 59,
        "promptTokenCount": 776,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 776}],
        "serviceTier": "standard",
        "thoughtsTokenCount": 184,
        "totalTokenCount": 1019,
    },
}


def test_cached_response_usage_is_inclusive() -> None:
    r = parse_response(CACHED_RESPONSE, "fp")
    assert r.message.content == "Paris." and r.message.reasoning is None and not r.message.tool_calls
    assert (r.finish_reason, r.model, r.id, r.prefix_fingerprint) == ("STOP", MODEL, "_VQYaqvRGbW6qtsPg4TDoAg", "fp")
    # promptTokenCount (3520) already includes the 3512 cached tokens; thoughts are output.
    assert r.usage == Usage(input_tokens=3520, cache_read_tokens=3512, output_tokens=44, reasoning_tokens=42)
    assert r.usage.uncached_input_tokens == 8
    assert r.raw_usage == CACHED_RESPONSE["usageMetadata"]


def test_thoughts_and_function_calls_with_signatures() -> None:
    r = parse_response(FUNCTION_CALL_RESPONSE)
    assert r.message.reasoning == "Checking the tree shape first." and r.message.content == ""
    first, second = r.message.tool_calls
    assert first.name == second.name == "record"
    assert dict(first.arguments) == {"tree": {"label": "root", "children": []}}
    assert first.signature == "Cv0EARFNMg+lgcC+jVSOOrWCpnKR6RoQ==" and second.signature is None
    # Gemini sends no ids: they are synthesized, deterministic, distinct per call.
    assert first.id == synthesize_call_id("XX1raozWNsW2qtsPyaOXmAQ", 0, "record")
    assert second.id == synthesize_call_id("XX1raozWNsW2qtsPyaOXmAQ", 1, "record")
    assert first.id != second.id and first.id.startswith("call_") and len(first.id) == 29
    assert parse_response(FUNCTION_CALL_RESPONSE).message.tool_calls[0].id == first.id
    assert r.usage == Usage(input_tokens=776, output_tokens=243, reasoning_tokens=184)


def test_model_falls_back_to_the_request_model() -> None:
    body = {k: v for k, v in CACHED_RESPONSE.items() if k != "modelVersion"}
    assert parse_response(body, model="gemini-2.5-pro").model == "gemini-2.5-pro"


def test_candidate_without_content_is_an_empty_answer() -> None:
    r = parse_response({"candidates": [{"finishReason": "MAX_TOKENS", "index": 0}], "usageMetadata": {}})
    assert r.finish_reason == "MAX_TOKENS" and r.message.content == ""
    assert r.usage is None  # an empty usageMetadata is unknown usage, not zero tokens


def test_blocked_prompt_raises_with_the_block_reason() -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9}}
    with pytest.raises(BadRequestError, match="PROHIBITED_CONTENT") as info:
        parse_response(blocked)
    assert info.value.code == "PROHIBITED_CONTENT"
    with pytest.raises(ProviderError, match="no candidates"):
        parse_response({"usageMetadata": {}})


def test_usage_mapping_counts_tool_use_prompt_and_defaults_to_zero() -> None:
    raw = {"promptTokenCount": 100, "toolUsePromptTokenCount": 20, "candidatesTokenCount": 5}
    assert usage_from_gemini(raw) == Usage(input_tokens=120, output_tokens=5)
    assert usage_from_gemini(None) is None and usage_from_gemini({}) is None  # unknown, never zeros


# -------------------------------------------------------------------------------------- stream parsing


def sse_chunk(parts: list[dict[str, Any]] | None, usage: dict[str, Any] | None, *, finish: str | None = None) -> str:
    candidate: dict[str, Any] = {"content": {"parts": parts or [], "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.0-flash-exp",
        "responseId": "w1peaMz6INOvnvgPgYfPiQY",
    }
    if usage is not None:
        event["usageMetadata"] = usage
    return json.dumps(event)


def run(parser: StreamParser, events: list[str]) -> tuple[list[StreamChunk], StreamChunk]:
    chunks = [c for e in events if (c := parser.feed(e)) is not None]
    return chunks, parser.finish()


def test_stream_final_usage_is_the_final_chunks_not_the_provisional_one() -> None:
    provisional = {"promptTokenCount": 15, "totalTokenCount": 15, "promptTokensDetails": [{"tokenCount": 15}]}
    final_usage = {
        "promptTokenCount": 13,
        "candidatesTokenCount": 8,
        "totalTokenCount": 21,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 13}],
    }
    events = [
        sse_chunk([{"text": "The"}], provisional),
        sse_chunk([{"text": " capital of France"}], provisional),
        sse_chunk([{"text": " is Paris.\n"}], final_usage, finish="STOP"),
    ]
    chunks, final = run(StreamParser("fp", model="fallback"), events)
    assert "".join(c.text for c in chunks) == "The capital of France is Paris.\n"
    assert all(c.usage is None and not c.final for c in chunks)
    assert final.final and final.finish_reason == "STOP" and final.model == "gemini-2.0-flash-exp"
    assert final.id == "w1peaMz6INOvnvgPgYfPiQY" and final.prefix_fingerprint == "fp"
    assert final.usage == Usage(input_tokens=13, output_tokens=8)
    assert final.raw_usage is not None and final.raw_usage["promptTokenCount"] == 13
    assert final.raw_usage["promptTokensDetails"] == final_usage["promptTokensDetails"]


def test_vertex_stream_keeps_cached_count_seen_only_on_intermediate_chunks() -> None:
    partial = {"cachedContentTokenCount": 2048, "trafficType": "ON_DEMAND"}
    events = [
        sse_chunk([{"text": "Hello"}], partial),
        sse_chunk([{"text": " there"}], partial),
        sse_chunk(
            [{"text": "."}],
            {"promptTokenCount": 2100, "candidatesTokenCount": 3, "totalTokenCount": 2103, "trafficType": "ON_DEMAND"},
            finish="STOP",
        ),
    ]
    _, final = run(StreamParser(), events)
    assert final.usage == Usage(input_tokens=2100, cache_read_tokens=2048, output_tokens=3)


def test_stream_thoughts_and_function_calls_match_the_invoke_parse() -> None:
    events = [
        sse_chunk([{"text": "Checking.", "thought": True}], {"promptTokenCount": 10}),
        sse_chunk(
            [{"functionCall": {"name": "record", "args": {"value": "hello", "a": 1}}, "thoughtSignature": "sig"}],
            {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 2},
            finish="STOP",
        ),
    ]
    chunks, final = run(StreamParser(), events)
    assert chunks[0].reasoning == "Checking." and chunks[0].text == ""
    (tc,) = chunks[1].tool_call_chunks
    assert tc.index is None and tc.name == "record" and tc.arguments == '{"a":1,"value":"hello"}'
    assert tc.id == synthesize_call_id("w1peaMz6INOvnvgPgYfPiQY", 0, "record")
    assert final.usage == Usage(input_tokens=10, output_tokens=6, reasoning_tokens=2)


def test_stream_without_finish_reason_raises() -> None:
    parser = StreamParser()
    parser.feed(sse_chunk([{"text": "The"}], {"promptTokenCount": 15}))
    with pytest.raises(ProviderConnectionError, match="finishReason"):
        parser.finish()


def test_error_inside_the_stream_is_typed() -> None:
    parser = StreamParser()
    event = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(ServerError) as info:
        parser.feed(json.dumps(event))
    assert info.value.code == "UNAVAILABLE"


def test_blocked_prompt_in_a_stream_raises() -> None:
    parser = StreamParser()
    with pytest.raises(BadRequestError, match="SAFETY"):
        parser.feed(json.dumps({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}))


# ------------------------------------------------------------------------------------------- encoding


def test_system_messages_become_the_system_instruction() -> None:
    req = ChatRequest(
        MODEL,
        (
            Message("system", "First rule."),
            Message("user", "Hi"),
            Message("system", (TextPart("Second "), TextPart("rule."))),
            Message("assistant", "Hello!", reasoning="greet back"),
            Message("user", (TextPart("Bye"),)),
        ),
    )
    body = body_of(encode_generate(req, stream=False).body)
    assert body["systemInstruction"] == {"parts": [{"text": "First rule."}, {"text": "Second rule."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},  # reasoning is not replayed
        {"role": "user", "parts": [{"text": "Bye"}]},
    ]
    assert "tools" not in body and "toolConfig" not in body and "generationConfig" not in body


def test_tool_round_trip_encodes_calls_with_signatures_and_merges_results() -> None:
    body = body_of(encode_generate(tool_round_trip(), stream=False).body)
    model_turn, results, last = body["contents"][1:]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"text": "Let me look."},
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLWE="},
            {"functionCall": {"name": "clock", "args": {}}},
        ],
    }
    assert results == {  # both results of the turn in one user content, named after their calls
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp_c": 21, "sky": "clear"}}},
            {"functionResponse": {"name": "clock", "response": {"result": "12:00"}}},
        ],
    }
    assert last == {"role": "user", "parts": [{"text": "Thanks. Anything else?"}]}
    names = [d["name"] for d in body["tools"][0]["functionDeclarations"]]
    assert names == ["clock", "weather"]  # the layout orders tools by name
    assert body["tools"][0]["functionDeclarations"][1]["parametersJsonSchema"] == dict(WEATHER.parameters)


def test_layout_off_keeps_tool_order_and_empty_model_turns_are_dropped() -> None:
    req = ChatRequest(
        MODEL,
        (Message("user", "hi"), Message("assistant", "", reasoning="only thoughts"), Message("user", "again?")),
        tools=(WEATHER, CLOCK_TOOL),
    )
    body = body_of(encode_generate(req, stream=False, layout=False).body)
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["weather", "clock"]
    assert [c["role"] for c in body["contents"]] == ["user", "user"]


def test_tool_choice_modes() -> None:
    def mode(choice: Any) -> Any:
        req = ChatRequest(MODEL, (Message("user", "hi"),), tools=(WEATHER, CLOCK_TOOL), tool_choice=choice)
        return body_of(encode_generate(req, stream=False).body)["toolConfig"]["functionCallingConfig"]

    assert mode("auto") == {"mode": "AUTO"}
    assert mode("none") == {"mode": "NONE"}
    assert mode("required") == {"mode": "ANY"}
    assert mode(ForcedTool("clock")) == {"mode": "ANY", "allowedFunctionNames": ["clock"]}


def test_generation_config_and_extra_merge() -> None:
    req = ChatRequest(
        MODEL,
        (Message("user", "hi"),),
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=("END",),
        response_format={"type": "json_object"},
        extra={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}, "safetySettings": []},
    )
    body = body_of(encode_generate(req, stream=True).body)
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 64,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert body["safetySettings"] == []
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = ChatRequest(
        MODEL, (Message("user", "hi"),), response_format={"type": "json_schema", "json_schema": {"schema": schema}}
    )
    config = body_of(encode_generate(req, stream=False).body)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_images_map_to_inline_and_file_data() -> None:
    req = ChatRequest(
        MODEL,
        (
            Message(
                "user",
                (
                    TextPart("Compare"),
                    ImagePart("data:image/png;base64,iVBORw0KGgo="),
                    ImagePart("https://example.com/photos/cat.JPG?size=large"),
                ),
            ),
        ),
    )
    (content,) = body_of(encode_generate(req, stream=False).body)["contents"]
    assert content["parts"] == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/photos/cat.JPG?size=large", "mimeType": "image/jpeg"}},
    ]


def test_with_cached_content_only_the_new_turns_are_sent() -> None:
    req = tool_round_trip()
    plain = encode_generate(req, stream=False)
    cached = encode_generate(req, stream=False, cached_content="abc123", cached_messages=2)
    body = body_of(cached.body)
    assert body["cachedContent"] == "cachedContents/abc123"
    assert not {"systemInstruction", "tools", "toolConfig"} & body.keys()
    # The cache holds the first user turn and the model turn; the merged tool results come next.
    assert body["contents"] == body_of(plain.body)["contents"][2:]
    assert body["contents"][0]["parts"][0]["functionResponse"]["name"] == "weather"  # name found in the cached part
    # Fingerprints describe the logical request, so a cached call reports the same prefix.
    assert cached.fingerprints == plain.fingerprints
    same = encode_generate(req, stream=False, cached_content="cachedContents/abc123", cached_messages=2)
    assert same.body == cached.body


def test_a_cache_boundary_inside_tool_results_moves_to_their_start() -> None:
    req = tool_round_trip()  # non-system messages: user, assistant, tool, tool, user
    payload = cache_payload(req, cached_messages=3)
    assert [c["role"] for c in payload["contents"]] == ["user", "model"]
    body = body_of(encode_generate(req, stream=False, cached_content="abc", cached_messages=3).body)
    assert len(body["contents"][0]["parts"]) == 2  # both results travel together after the cache


def test_cache_create_body() -> None:
    req = conversation()
    body = body_of(encode_cache_create(req, cached_messages=2, ttl_seconds=3600, display_name="doc"))
    assert body["model"] == "models/gemini-2.5-flash" and body["ttl"] == "3600s" and body["displayName"] == "doc"
    assert body["systemInstruction"] == {"parts": [{"text": SYSTEM.text}]}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": LONG_DOC}]},
        {"role": "model", "parts": [{"text": "Noted."}]},
    ]
    payload = cache_payload(req, cached_messages=2)
    assert {k: v for k, v in body.items() if k not in ("ttl", "displayName")} == payload
    assert "contents" not in cache_payload(req, cached_messages=0)
    assert body_of(encode_cache_create(req, cached_messages=1, ttl_seconds=2.5))["ttl"] == "2.5s"
    assert "ttl" not in body_of(encode_cache_create(req, cached_messages=1))
    # The uncached call of the same conversation carries the same system instruction, tools and contents.
    plain = body_of(encode_generate(req, stream=False).body)
    assert plain["contents"][:2] == payload["contents"] and plain["tools"] == payload["tools"]


def test_equivalent_requests_encode_to_identical_bytes() -> None:
    schema_a = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}
    schema_b = {"properties": {"unit": {"enum": ["c", "f"]}, "city": {"type": "string"}}, "type": "object"}
    msgs = (
        SYSTEM,
        Message("user", "hi"),
        Message("assistant", "", tool_calls=(ToolCall("c1", "w", {"b": 1, "a": 2}),)),
    )
    msgs_b = (*msgs[:2], Message("assistant", "", tool_calls=(ToolCall("c1", "w", {"a": 2, "b": 1}),)))
    tail = (Message("tool", '{"y": 1, "x": 2}', tool_call_id="c1"),)
    a = ChatRequest(MODEL, msgs + tail, tools=(ToolDefinition("w", "W", schema_a), CLOCK_TOOL))
    b = ChatRequest(MODEL, msgs_b + tail, tools=(CLOCK_TOOL, ToolDefinition("w", "W", schema_b)))
    enc_a, enc_b = encode_generate(a, stream=False), encode_generate(b, stream=False)
    assert enc_a.body == enc_b.body and enc_a.fingerprints == enc_b.fingerprints
    assert encode_cache_create(a, cached_messages=1) == encode_cache_create(b, cached_messages=1)
    assert cache_payload(a, cached_messages=2) == cache_payload(b, cached_messages=2)
    # A different conversation diverges only after the shared prefix.
    c = ChatRequest(MODEL, (SYSTEM, Message("user", "hello")), tools=a.tools)
    fa, fc = enc_a.fingerprints.chain, encode_generate(c, stream=False).fingerprints.chain
    assert fa[0] == fc[0] and fa[1] != fc[1]


def test_model_may_carry_the_models_prefix() -> None:
    req = ChatRequest("models/gemini-2.5-flash", (Message("user", "hi"),))
    enc = encode_generate(req, stream=False)
    assert enc.model == MODEL
    assert cache_payload(req, cached_messages=1)["model"] == "models/gemini-2.5-flash"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request": ChatRequest(MODEL, ())}, r"messages: at least one message"),
        ({"request": ChatRequest(MODEL, (SYSTEM,))}, r"at least one user, assistant or tool message"),
        ({"request": ChatRequest("", (Message("user", "hi"),))}, r"model: a model name is required"),
        ({"request": ChatRequest(MODEL, (Message("user", ""),))}, r"messages\[0\]: a user message needs text"),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"), Message("tool", "1", tool_call_id="nope")))},
            r"messages\[1\]: tool_call_id 'nope' answers no tool call",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"), Message("tool", "1")))},
            r"messages\[1\]: a tool message needs the tool_call_id",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", (ImagePart("https://x.test/files/abc"),)),))},
            r"messages\[0\]\.content\[0\]: cannot tell the media type",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", (ImagePart("data:image/png,raw"),)),))},
            r"messages\[0\]\.content\[0\]: a data URL image",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", (ImagePart("ftp://x.test/a.png"),)),))},
            r"scheme 'ftp' is not supported",
        ),
        (
            {
                "request": ChatRequest(
                    MODEL, (Message("user", "a"), Message("assistant", (ImagePart("https://x/a.png"),)))
                )
            },
            r"messages\[1\]: Gemini accepts images only in user messages",
        ),
        ({"request": ChatRequest(MODEL, (Message("user", "hi"),), stop=tuple("abcdef"))}, r"at most 5 stop"),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"),), tools=(WEATHER,), tool_choice=ForcedTool("x"))},
            r"tool_choice: 'x' is not one of the bound tools",
        ),
        ({"request": ChatRequest(MODEL, (Message("user", "hi"),), tool_choice="auto")}, r"tool_choice: given without"),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"),), response_format={"type": "xml"})},
            r"response_format: unsupported type 'xml'",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"),), extra={"tools": []})},
            r"extra body field 'tools' collides",
        ),
        (
            {"request": ChatRequest(MODEL, (Message("user", "hi"),), extra={"system_instruction": {}})},
            r"extra body field 'system_instruction': use 'systemInstruction'",
        ),
        (
            {
                "request": ChatRequest(
                    MODEL, (Message("user", "hi"),), temperature=0.1, extra={"generationConfig": {"temperature": 1}}
                )
            },
            r"extra generationConfig field 'temperature' collides",
        ),
        ({"cached_content": "c1", "cached_messages": 5}, r"cached_messages: must be between 0 and 2"),
        ({"cached_content": "c1", "cached_messages": -1}, r"cached_messages: must be between 0 and 2"),
        ({"cached_content": "c1", "cached_messages": 2}, r"after the cached ones"),
        ({"cached_messages": 1}, r"cached_messages=1 given without cached_content"),
        ({"cached_content": "cachedContents/../models", "cached_messages": 1}, r"cached_content: expected"),
    ],
)
def test_bad_input_names_the_problem(kwargs: dict[str, Any], message: str) -> None:
    request = kwargs.pop("request", ChatRequest(MODEL, (SYSTEM, Message("user", "a"), Message("assistant", "b"))))
    with pytest.raises(InvalidRequestError, match=message):
        encode_generate(request, stream=False, **kwargs)


@pytest.mark.parametrize(
    ("ttl", "message"),
    [(0, "positive"), (-5, "positive"), (float("inf"), "positive"), (1e-12, "rounds to 0"), (True, "number")],
)
def test_bad_ttl(ttl: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"ttl_seconds: .*{message}"):
        encode_cache_create(conversation(), cached_messages=1, ttl_seconds=ttl)


def test_ttl_and_timestamp_formats() -> None:
    assert [format_ttl(v) for v in (3600, 3600.0, 2.5, 0.1, 1.000000001)] == [
        "3600s",
        "3600s",
        "2.5s",
        "0.1s",
        "1.000000001s",
    ]
    ts = parse_timestamp("2026-05-28T14:47:16.701652823Z")
    assert ts == datetime(2026, 5, 28, 14, 47, 16, 701652, tzinfo=UTC)
    assert parse_timestamp("2026-05-28T14:45:17Z").microsecond == 0
    assert parse_timestamp("2026-05-28T16:45:17.5+02:00") == datetime(2026, 5, 28, 14, 45, 17, 500000, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
    assert cached_content_name("abc") == cached_content_name("cachedContents/abc") == "cachedContents/abc"


# --------------------------------------------------------------------------------------------- errors

OFFLINE = GeminiProvider(api_key=SecretStr(KEY))
TOO_SMALL = "Cached content is too small. total_token_count=16, min_total_token_count=1024"
CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
    "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request."
)


def google(code: int, message: str, status: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status, **extra}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "retryable"),
    [
        (400, google(400, TOO_SMALL, "INVALID_ARGUMENT"), CachedContentTooSmallError, "INVALID_ARGUMENT", False),
        (400, google(400, CONFLICT, "INVALID_ARGUMENT"), BadRequestError, "INVALID_ARGUMENT", False),
        (
            400,
            google(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            ),
            AuthenticationError,
            "INVALID_ARGUMENT",
            False,
        ),
        (
            401,
            google(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
            AuthenticationError,
            "UNAUTHENTICATED",
            False,
        ),
        (
            403,
            google(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED"),
            CachedContentNotFoundError,
            "PERMISSION_DENIED",
            False,
        ),
        (
            403,
            google(403, "Method doesn't allow unregistered callers.", "PERMISSION_DENIED"),
            PermissionDeniedError,
            "PERMISSION_DENIED",
            False,
        ),
        (
            404,
            google(404, "Not found: CachedContent projects/1/locations/us/cachedContents/9", "NOT_FOUND"),
            CachedContentNotFoundError,
            "NOT_FOUND",
            False,
        ),
        (
            404,
            google(404, "models/gemini-9 is not found for API version v1beta", "NOT_FOUND"),
            NotFoundError,
            "NOT_FOUND",
            False,
        ),
        (
            429,
            google(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
            RateLimitError,
            "RESOURCE_EXHAUSTED",
            True,
        ),
        (
            429,
            google(
                429,
                "Quota exceeded for metric: TotalCachedContentStorageTokensPerModelFreeTier, limit: 0",
                "RESOURCE_EXHAUSTED",
            ),
            RateLimitError,
            "RESOURCE_EXHAUSTED",
            False,
        ),
        (500, google(500, "An internal error has occurred.", "INTERNAL"), ServerError, "INTERNAL", True),
        (
            503,
            google(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"),
            ServerError,
            "UNAVAILABLE",
            True,
        ),
    ],
)
def test_error_bodies_map_to_typed_errors(
    status: int, body: bytes, cls: type[ProviderError], code: str, retryable: bool
) -> None:
    err = OFFLINE.error_from_response(status, {}, body)
    assert type(err) is cls and err.status_code == status and err.code == code and err.provider == "google"
    assert OFFLINE.is_retryable(err) is retryable
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in repr(OFFLINE)


def test_too_small_carries_the_parsed_counts() -> None:
    err = OFFLINE.error_from_response(400, {}, google(400, TOO_SMALL, "INVALID_ARGUMENT"))
    assert isinstance(err, CachedContentTooSmallError)
    assert (err.total_token_count, err.min_total_token_count) == (16, 1024)


def test_non_json_and_array_wrapped_error_bodies_still_map() -> None:
    err = OFFLINE.error_from_response(502, {}, b"<html>Bad gateway</html>" * 100)
    assert isinstance(err, ServerError) and "Bad gateway" in err.message and len(err.message) <= 500
    err = OFFLINE.error_from_response(429, {}, b"[" + google(429, "slow down", "RESOURCE_EXHAUSTED") + b"]")
    assert isinstance(err, RateLimitError) and err.message == "slow down"


def test_offline_provider_defaults() -> None:
    assert OFFLINE.base_url == GEMINI_BASE_URL and OFFLINE.provider == OFFLINE.price_provider == "google"


# ------------------------------------------------------------------------------------ against the emulator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


@pytest.fixture
def provider(emu: Emulator) -> Iterator[GeminiProvider]:
    with httpx.Client(transport=emu.transport()) as client:
        yield GeminiProvider(
            api_key=SecretStr(KEY),
            base_url=EMULATOR_URL,
            http_client=client,
            async_http_client=httpx.AsyncClient(transport=emu.transport()),
            retry_policy=RetryPolicy(max_retries=2, initial_delay=0.0, jitter=0.0),
        )


def generate_requests(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body for r in emu.requests if r.path.endswith(("generateContent", "streamGenerateContent"))]


def collect(chunks: list[StreamChunk]) -> tuple[str, StreamChunk]:
    assert chunks[-1].final and all(not c.final and c.usage is None for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks[-1]


async def test_invoke_and_stream_agree_sync_and_async(provider: GeminiProvider, emu: Emulator) -> None:
    req = conversation()
    first = provider.chat(req)  # warms the emulator's implicit cache, so the calls below see the same state
    assert first.message.content and first.usage.input_tokens > 1500
    again = provider.chat(req)
    aagain = await provider.achat(req)
    text, final = collect(list(provider.stream(req)))
    atext, afinal = collect([c async for c in provider.astream(req)])
    assert again.usage == aagain.usage == final.usage == afinal.usage
    sent = model_usages(emu)[1]  # the second answer's usageMetadata, as the server sent it
    assert gemini_cached(sent) > 0  # the implicit cache served the repeated prefix
    assert again.usage.cache_read_tokens == gemini_cached(sent)
    assert again.usage.input_tokens == sent["promptTokenCount"]
    assert again.message.content == aagain.message.content == text == atext
    assert final.model == MODEL and final.prefix_fingerprint == again.prefix_fingerprint
    for record in emu.requests:  # the key travels in the header only, never in the URL
        assert "key" not in record.query and record.headers.get("x-goog-api-key") == "***"
    stream_calls = [r for r in emu.requests if r.path.endswith(":streamGenerateContent")]
    assert len(stream_calls) == 2 and all(r.query == {"alt": "sse"} for r in stream_calls)


async def test_count_tokens_matches_the_generate_prompt(provider: GeminiProvider, emu: Emulator) -> None:
    req = conversation()
    counted = provider.count_tokens(req)
    assert counted == await provider.acount_tokens(req) == provider.chat(req).usage.input_tokens
    inner = emu.requests[0].body["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash" and "systemInstruction" in inner and "tools" in inner


async def test_tool_round_trip_against_the_emulator(provider: GeminiProvider) -> None:
    ask = ChatRequest(MODEL, (Message("user", "Weather in Paris?"),), tools=(WEATHER,), tool_choice="required")
    answer = provider.chat(ask)
    (call,) = answer.message.tool_calls
    assert call.name == "weather" and call.id == synthesize_call_id(answer.id, 0, "weather")
    (streamed,) = [tc for c in provider.stream(ask) for tc in c.tool_call_chunks]
    assert streamed.name == "weather" and json.loads(streamed.arguments or "") == dict(call.arguments)
    follow = ChatRequest(
        MODEL,
        (*ask.messages, answer.message, Message("tool", '{"temp_c": 21}', tool_call_id=call.id)),
        tools=(WEATHER,),
    )
    final = await provider.achat(follow)
    assert final.message.content and not final.message.tool_calls


async def test_cached_contents_lifecycle(provider: GeminiProvider, emu: Emulator, clock: FakeClock) -> None:
    req = conversation()
    assert list(provider.list_cached_contents()) == []  # an empty list is the body {}
    created = provider.create_cached_content(req, cached_messages=2, ttl_seconds=600, display_name="geo")
    assert created.name.startswith("cachedContents/") and created.model == MODEL and created.display_name == "geo"
    assert created.total_token_count > 1024 and created.expire_time.tzinfo is not None
    assert created.expire_time - created.create_time == timedelta(seconds=600)
    assert provider.get_cached_content(created.name) == created
    assert await provider.aget_cached_content(created.name.removeprefix("cachedContents/")) == created

    others = [provider.create_cached_content(req, cached_messages=2, ttl_seconds=600) for _ in range(2)]
    listed = list(provider.list_cached_contents(page_size=2))
    assert [c.name for c in listed] == [created.name, *(c.name for c in others)]
    assert [c.name async for c in provider.alist_cached_contents(page_size=1)] == [c.name for c in listed]
    assert any("pageToken" in r.query for r in emu.requests)
    for other in others:
        provider.delete_cached_content(other.name)

    used = provider.chat(req, cached_content=created.name, cached_messages=2)
    assert created.total_token_count == created_caches(emu)[0]  # the resource's size as sent
    sent = model_usages(emu)[-1]
    assert used.usage.cache_read_tokens == gemini_cached(sent) == created.total_token_count
    assert used.usage.input_tokens == sent["promptTokenCount"] > created.total_token_count
    _, final = collect(list(provider.stream(req, cached_content=created.name, cached_messages=2)))
    assert final.usage == used.usage and final.prefix_fingerprint == used.prefix_fingerprint
    aused = await provider.achat(req, cached_content=created.name, cached_messages=2)
    assert aused.usage == used.usage

    clock.advance(60)
    patched = provider.update_cached_content(created.name, ttl_seconds=3600)
    assert patched.expire_time - created.create_time == timedelta(seconds=3660)
    assert patched.update_time > created.update_time
    target = datetime.fromtimestamp(clock.time(), UTC) + timedelta(hours=2)
    patched = await provider.aupdate_cached_content(created.name, expire_time=target)
    assert patched.expire_time == target
    with pytest.raises(InvalidRequestError, match="exactly one"):
        provider.update_cached_content(created.name)
    with pytest.raises(InvalidRequestError, match="timezone-aware"):
        provider.update_cached_content(created.name, expire_time=datetime(2030, 1, 1))

    provider.delete_cached_content(created.name)
    before = len(emu.requests)
    with pytest.raises(CachedContentNotFoundError) as info:
        provider.chat(req, cached_content=created.name, cached_messages=2)
    assert info.value.status_code == 403 and len(emu.requests) == before + 1  # not retried
    with pytest.raises(CachedContentNotFoundError):
        provider.get_cached_content(created.name)
    with pytest.raises(CachedContentNotFoundError):
        await provider.adelete_cached_content(created.name)
    assert list(provider.list_cached_contents()) == []

    for body in generate_requests(emu):
        if "cachedContent" in body:
            assert not {"systemInstruction", "tools", "toolConfig"} & body.keys()
            assert body["contents"] == [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}]


async def test_expired_cache_is_not_found(provider: GeminiProvider, clock: FakeClock) -> None:
    req = conversation()
    created = await provider.acreate_cached_content(req, cached_messages=2, ttl_seconds=30)
    clock.advance(31)
    with pytest.raises(CachedContentNotFoundError):
        [c async for c in provider.astream(req, cached_content=created.name, cached_messages=2)]


async def test_too_small_cache_reports_the_minimum(provider: GeminiProvider, emu: Emulator) -> None:
    tiny = ChatRequest(MODEL, (SYSTEM, Message("user", "Short."), Message("user", "Go.")))
    with pytest.raises(CachedContentTooSmallError) as info:
        provider.create_cached_content(tiny, cached_messages=1)
    assert info.value.min_total_token_count == 1024 and 0 < (info.value.total_token_count or 0) < 1024
    emu.gemini_cache_min_tokens = 4096
    with pytest.raises(CachedContentTooSmallError) as ainfo:
        await provider.acreate_cached_content(conversation(), cached_messages=2)
    assert ainfo.value.min_total_token_count == 4096
    assert [r.status for r in emu.requests] == [400, 400]  # never retried


def test_server_errors_are_retried(provider: GeminiProvider, emu: Emulator) -> None:
    emu.inject_fault(gemini_unavailable(), times=2)
    assert provider.chat(conversation()).message.content
    assert [r.status for r in emu.requests] == [503, 503, 200]
