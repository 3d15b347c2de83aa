"""Zhipu GLM endpoint: wire format, errors, thinking, tools, and implicit prefix caching."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cache_integrations.testing import CacheRules, Emulator, FakeClock, count_tokens

URL = "/api/paas/v4/chat/completions"
GLM_AUTH = {"Authorization": "Bearer test-key"}
SYSTEM = "You are a meticulous reviewer of Python code. Follow the house style guide strictly. " * 40
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather information for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "the city"}},
            "required": ["location"],
        },
    },
}


def chat(client: httpx.Client, body: dict[str, Any], url: str = URL) -> httpx.Response:
    return client.post(url, json=body, headers=GLM_AUTH)


def sse(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def conversation(user: str, model: str = "glm-4.6") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}


# ------------------------------------------------------------------------------------ errors


def test_missing_auth_is_401_with_string_code(client: httpx.Client) -> None:
    r = client.post(URL, json=conversation("hi"))
    assert r.status_code == 401
    assert r.json() == {
        "error": {
            "code": "1001",
            "message": "Authentication parameter not received in Header, unable to authenticate",
        }
    }


def test_restricted_api_keys(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, api_keys={"good"})
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        bad = c.post(URL, json=conversation("hi"), headers={"Authorization": "Bearer nope"})
        good = c.post(URL, json=conversation("hi"), headers={"Authorization": "Bearer good"})
    # Zhipu's 1000-series auth codes (docs.z.ai/api-reference/api-code): 1000 for a wrong key, never 1210
    assert bad.status_code == 401 and bad.json() == {"error": {"code": "1000", "message": "Authentication Failed"}}
    assert good.status_code == 200


def test_empty_messages_is_1214(client: httpx.Client) -> None:
    r = chat(client, {"model": "glm-4.6", "messages": []})
    assert r.status_code == 400
    assert r.json() == {
        "error": {"code": "1214", "message": "The messages parameter is illegal. Please check the documentation."}
    }


def test_unknown_role_is_1214_naming_the_role(client: httpx.Client) -> None:
    r = chat(client, {"model": "glm-4.6", "messages": [{"role": "wizard", "content": "x"}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "1214" and "wizard" in err["message"]


def test_more_than_one_stop_word_is_1210(client: httpx.Client) -> None:
    r = chat(client, {**conversation("hi"), "stop": ["a", "b"]})
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "1210", "message": "Invalid API parameter, please check the documentation."}}


def test_invalid_json_and_bad_thinking_are_1210(client: httpx.Client) -> None:
    r = client.post(URL, content=b"{not json", headers=GLM_AUTH)
    assert r.status_code == 400 and r.json()["error"]["code"] == "1210"
    r = chat(client, {**conversation("hi"), "thinking": {"type": "sometimes"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "1210"


# ----------------------------------------------------------------------------------- wire shape


def test_non_streaming_shape(client: httpx.Client, clock: FakeClock) -> None:
    r = chat(client, conversation("Summarise the style guide please"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["choices", "created", "id", "model", "object", "request_id", "usage"]
    assert re.fullmatch(r"20260101000000[0-9a-f]{16}", body["id"])
    assert body["request_id"] == body["id"]
    assert body["created"] == int(clock.time())
    assert body["object"] == "chat.completion" and body["model"] == "glm-4.6"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("Emulated reply to: Summarise the style guide please.")
    assert "reasoning_content" not in message  # glm-4.6 does not think unless asked
    assert 20 <= count_tokens(message["content"]) <= 60
    usage = body["usage"]
    assert usage["completion_tokens"] == count_tokens(message["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert "completion_tokens_details" not in usage


def test_answers_are_deterministic(clock: FakeClock) -> None:
    bodies = []
    for _ in range(2):
        emu = Emulator(clock=FakeClock())
        with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
            bodies.append(chat(c, conversation("same question")).json())
    assert bodies[0] == bodies[1]


@pytest.mark.parametrize(
    ("model", "thinking", "expected"),
    [
        ("glm-4.7", None, True),
        ("glm-5.1", None, True),
        ("glm-4.6", None, False),
        ("glm-4.5", {"type": "enabled"}, True),
        ("glm-4.7", {"type": "disabled"}, False),
    ],
)
def test_thinking_defaults(client: httpx.Client, model: str, thinking: Any, expected: bool) -> None:
    body = conversation("What is 2 + 2?", model=model)
    if thinking is not None:
        body["thinking"] = thinking
    data = chat(client, body).json()
    message, usage = data["choices"][0]["message"], data["usage"]
    assert ("reasoning_content" in message) is expected
    if expected:
        reasoning = count_tokens(message["reasoning_content"])
        assert usage["completion_tokens_details"] == {"reasoning_tokens": reasoning}
        assert usage["completion_tokens"] == reasoning + count_tokens(message["content"])
    else:
        assert "completion_tokens_details" not in usage


def test_max_tokens_truncates_with_length(client: httpx.Client) -> None:
    data = chat(client, {**conversation("Explain caching"), "max_tokens": 5}).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert count_tokens(data["choices"][0]["message"]["content"]) == 5
    assert data["usage"]["completion_tokens"] == 5


def test_max_tokens_spent_on_reasoning_leaves_no_content(client: httpx.Client) -> None:
    data = chat(client, {**conversation("Explain caching", model="glm-4.7"), "max_tokens": 3}).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == ""
    assert data["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_stop_word_truncates(client: httpx.Client) -> None:
    data = chat(client, {**conversation("Explain caching"), "stop": ["reply"]}).json()
    assert data["choices"][0]["message"]["content"] == "Emulated "
    assert data["choices"][0]["finish_reason"] == "stop"


def test_json_object_mode(client: httpx.Client) -> None:
    data = chat(client, {**conversation("Give me JSON"), "response_format": {"type": "json_object"}}).json()
    parsed = json.loads(data["choices"][0]["message"]["content"])
    assert parsed["answer"].startswith("Emulated reply to: Give me JSON")


def test_client_request_id_is_echoed(client: httpx.Client) -> None:
    data = chat(client, {**conversation("hi"), "request_id": "my-request-0001"}).json()
    assert data["id"] == data["request_id"] == "my-request-0001"


def test_coding_endpoint_is_served(client: httpx.Client) -> None:
    r = chat(client, conversation("hi"), url="/api/coding/paas/v4/chat/completions")
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"


# ---------------------------------------------------------------------------------------- tools


def test_tool_call_synthesis(client: httpx.Client) -> None:
    body = {
        "model": "glm-4.7-flash",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant"},
            {"role": "user", "content": "What's the weather in Florence, Italy?"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}},
            WEATHER_TOOL,
        ],
        "tool_choice": "auto",
    }
    data = chat(client, body).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert set(call) == {"function", "id", "index", "type"}
    assert re.fullmatch(r"call_-\d{19}", call["id"])
    assert call["index"] == 0 and call["type"] == "function"
    assert call["function"]["name"] == "weather"  # named in the user text, not the first tool
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"location": "Florence"}


def test_tool_arguments_follow_the_schema(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "exact": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"$ref": "#/$defs/Place"},
            "optional": {"type": "string"},
        },
        "required": ["a", "b", "unit", "exact", "tags", "where"],
        "$defs": {
            "Place": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "child": {"$ref": "#/$defs/Place"}},
                "required": ["lat", "child"],
            }
        },
    }
    body = {
        "model": "glm-4.6",
        "messages": [{"role": "user", "content": "Add the numbers 2 and 3 for Rome"}],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": schema}}],
    }
    call = chat(client, body).json()["choices"][0]["message"]["tool_calls"][0]
    args = json.loads(call["function"]["arguments"])
    assert args["a"] == 2 and args["b"] == 3
    assert args["unit"] == "celsius" and args["exact"] is True
    assert args["tags"] == ["Rome"]
    assert "optional" not in args
    depth, node = 0, args["where"]
    while node:
        assert isinstance(node["lat"], (int, float))
        node, depth = node.get("child"), depth + 1
    assert depth >= 2  # recursion was followed, then cut off


def test_tool_choice_none_and_tool_result_turn(client: httpx.Client) -> None:
    base = {"model": "glm-4.6", "tools": [WEATHER_TOOL]}
    first = chat(client, {**base, "messages": [{"role": "user", "content": "weather in Oslo?"}], "tool_choice": "none"})
    assert first.json()["choices"][0]["finish_reason"] == "stop"
    messages = [
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_-1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"location":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_-1", "content": "40 C"},
    ]
    data = chat(client, {**base, "messages": messages}).json()
    assert data["choices"][0]["finish_reason"] == "stop"
    assert "The weather tool returned: 40 C." in data["choices"][0]["message"]["content"]


# --------------------------------------------------------------------------------------- stream


def test_stream_usage_on_finish_chunk(client: httpx.Client) -> None:
    body = {**conversation("Stream please", model="glm-4.7"), "stream": True, "stream_options": {"include_usage": True}}
    r = chat(client, body)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    reasoning = [c["choices"][0]["delta"].get("reasoning_content") for c in chunks]
    content = [c["choices"][0]["delta"].get("content") for c in chunks]
    first_content = next(i for i, v in enumerate(content) if v)
    assert all(r is None for r in reasoning[first_content:])  # reasoning comes first
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in chunks)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("usage" not in c for c in chunks[:-1])
    usage = final["usage"]
    text = "".join(v or "" for v in content)
    thought = "".join(v or "" for v in reasoning)
    assert usage["completion_tokens"] == count_tokens(text) + count_tokens(thought)
    assert usage["completion_tokens_details"] == {"reasoning_tokens": count_tokens(thought)}
    # streaming and non-streaming agree
    plain = chat(client, conversation("Stream please", model="glm-4.7")).json()
    assert plain["choices"][0]["message"]["content"] == text


def test_stream_usage_in_separate_chunk_and_without_details(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, glm_usage_chunk="separate", glm_prompt_tokens_details=False)
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        body = {**conversation("hi"), "stream": True, "stream_options": {"include_usage": True}}
        events = sse(chat(c, body).text)
    finish, usage_chunk, done = events[-3], events[-2], events[-1]
    assert done == "[DONE]"
    assert finish["choices"][0]["finish_reason"] == "stop" and "usage" not in finish
    assert usage_chunk["choices"] == [] and usage_chunk["object"] == "chat.completion.chunk"
    assert "prompt_tokens_details" not in usage_chunk["usage"]
    assert usage_chunk["usage"]["total_tokens"] > 0


def test_stream_tool_call_arrives_complete(client: httpx.Client) -> None:
    body = {"model": "glm-4.6", "messages": [{"role": "user", "content": "weather in Paris"}], "tools": [WEATHER_TOOL]}
    events = sse(chat(client, {**body, "stream": True}).text)
    calls = [e["choices"][0]["delta"]["tool_calls"] for e in events[:-1] if "tool_calls" in e["choices"][0]["delta"]]
    assert len(calls) == 1
    [call] = calls[0]
    assert call["index"] == 0 and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


# ------------------------------------------------------------------------------ implicit caching


def test_second_call_reports_the_shared_prefix(client: httpx.Client) -> None:
    first = chat(client, conversation("Review module alpha")).json()["usage"]
    second = chat(client, conversation("Check module beta")).json()["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    shared = count_tokens("<|system|>\n" + SYSTEM) + count_tokens("<|user|>")
    assert second["prompt_tokens_details"]["cached_tokens"] == shared
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert second["prompt_tokens"] > second["prompt_tokens_details"]["cached_tokens"]


def test_next_turn_caches_the_whole_previous_prompt(client: httpx.Client) -> None:
    body = conversation("Review module alpha")
    first = chat(client, body).json()
    reply = first["choices"][0]["message"]["content"]
    body["messages"] += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And beta?"}]
    second = chat(client, body).json()["usage"]
    assert second["prompt_tokens_details"]["cached_tokens"] == first["usage"]["prompt_tokens"]


def test_reordered_tool_keys_lose_the_cache(client: httpx.Client) -> None:
    tool = WEATHER_TOOL
    reordered = {"function": {k: tool["function"][k] for k in reversed(list(tool["function"]))}, "type": "function"}
    body = {**conversation("weather in Oslo?"), "tools": [tool], "tool_choice": "none"}
    chat(client, body)
    same = chat(client, body).json()["usage"]
    changed = chat(client, {**body, "tools": [reordered]}).json()["usage"]
    assert same["prompt_tokens_details"]["cached_tokens"] == same["prompt_tokens"]
    assert changed["prompt_tokens"] == same["prompt_tokens"]  # same tokens, different order
    assert changed["prompt_tokens_details"]["cached_tokens"] < 10


def test_cache_is_per_api_key_and_model(client: httpx.Client) -> None:
    chat(client, conversation("one"))
    other_key = client.post(URL, json=conversation("one"), headers={"Authorization": "Bearer other"})
    other_model = chat(client, conversation("one", model="glm-4.5"))
    assert other_key.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert other_model.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_ttl_expiry_and_refresh(client: httpx.Client, clock: FakeClock) -> None:
    chat(client, conversation("one"))
    clock.advance(299)
    hit = chat(client, conversation("two")).json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert hit > 0
    clock.advance(299)  # both entries refreshed/created 299 s ago: still alive
    assert chat(client, conversation("three")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] == hit
    clock.advance(301)
    assert chat(client, conversation("four")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_configurable_rules(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, glm_rules=CacheRules(min_tokens=0, granularity=64, ttl_seconds=10))
    emu.model_rules["glm-4-off"] = CacheRules(enabled=False)
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        chat(c, conversation("one"))
        cached = chat(c, conversation("two")).json()["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert cached > 0 and cached % 64 == 0
        clock.advance(11)
        assert chat(c, conversation("three")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        chat(c, conversation("one", model="glm-4-off"))
        off = chat(c, conversation("one", model="glm-4-off")).json()["usage"]
        assert off["prompt_tokens_details"]["cached_tokens"] == 0


def test_evict_all_drops_implicit_caches(client: httpx.Client, emu: Emulator) -> None:
    chat(client, conversation("one"))
    assert emu.implicit_cache_entries == 1
    emu.evict_all()
    assert emu.implicit_cache_entries == 0
    assert chat(client, conversation("one")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_max_implicit_entries_evicts_oldest(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, max_implicit_entries=2)
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        for model in ("glm-a", "glm-b", "glm-c"):
            chat(c, conversation("x", model=model))
        assert emu.implicit_cache_entries == 2
        assert chat(c, conversation("x", model="glm-a")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        assert chat(c, conversation("x", model="glm-c")).json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_generated_output_is_not_cached(client: httpx.Client) -> None:
    first = chat(client, {"model": "glm-4.6", "messages": [{"role": "user", "content": "hello"}]}).json()
    reply = first["choices"][0]["message"]["content"]
    # a new conversation that starts with the model's own words: only prompts count, not outputs
    data = chat(client, {"model": "glm-4.6", "messages": [{"role": "assistant", "content": reply}]}).json()
    assert data["usage"]["prompt_tokens_details"]["cached_tokens"] <= 2
