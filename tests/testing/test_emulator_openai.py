"""OpenAI-compatible endpoint: 1024/128 caching rule, stream usage only on request, error shapes."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from cache_integrations.testing import Emulator, FakeClock, count_tokens

URL = "/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-test"}


def chat(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post(URL, json=body, headers=AUTH)


def sse(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def words(n: int, seed: str = "w") -> str:
    """A text of exactly ``n`` tokens."""
    return " ".join(f"{seed}{i}" for i in range(n))


def body_with_system(system: str, user: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }


def system_for_prefix(prefix_tokens: int) -> str:
    """A system text whose rendered segment plus the user marker is exactly ``prefix_tokens`` tokens."""
    overhead = count_tokens("<|system|>") + count_tokens("<|user|>")
    return words(prefix_tokens - overhead)


def test_shape_and_ids(client: httpx.Client) -> None:
    data = chat(client, body_with_system("Be brief.", "Hello there")).json()
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", data["id"])
    assert data["object"] == "chat.completion"
    assert data["system_fingerprint"].startswith("fp_")
    choice = data["choices"][0]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": choice["message"]["content"], "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = data["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("shared", "expected"),
    [(1000, 0), (1023, 0), (1024, 1024), (1100, 1024), (1151, 1024), (1152, 1152), (2200, 2176)],
)
def test_1024_minimum_and_128_increments(client: httpx.Client, shared: int, expected: int) -> None:
    system = system_for_prefix(shared)
    chat(client, body_with_system(system, "alpha question"))
    usage = chat(client, body_with_system(system, "beta question")).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == expected


def test_exact_repeat_is_floored(client: httpx.Client) -> None:
    body = body_with_system(words(1200), "same")
    first = chat(client, body).json()["usage"]
    second = chat(client, body).json()["usage"]
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert second["prompt_tokens_details"]["cached_tokens"] == first["prompt_tokens"] // 128 * 128


def test_stream_without_include_usage_has_no_usage(client: httpx.Client) -> None:
    events = sse(chat(client, {**body_with_system("s", "hi"), "stream": True}).text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_stream_include_usage_final_chunk(client: httpx.Client) -> None:
    body = {**body_with_system("s", "hi"), "stream": True, "stream_options": {"include_usage": True}}
    events = sse(chat(client, body).text)
    chunks = events[:-1]
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == []
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert last["usage"]["completion_tokens"] == count_tokens(text)
    assert last["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}


def test_stream_tool_call_fragments(client: httpx.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "lookup Berlin"}], "tools": [tool]}
    plain = chat(client, body).json()["choices"][0]
    assert plain["finish_reason"] == "tool_calls" and plain["message"]["content"] is None
    [call] = plain["message"]["tool_calls"]
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call["id"]) and "index" not in call
    events = sse(chat(client, {**body, "stream": True}).text)[:-1]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[0]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": ""}
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert json.loads(args) == {"q": "Berlin"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_errors_have_openai_shape(client: httpx.Client) -> None:
    r = client.post(URL, json=body_with_system("s", "hi"))
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = chat(client, {"model": "gpt-4o-mini", "messages": []})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "empty_array" and r.json()["error"]["param"] == "messages"
    r = chat(client, {**body_with_system("s", "hi"), "stop": ["a", "b", "c", "d", "e"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"
    dangling = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_1", "content": "y"}]
    r = chat(client, {"model": "gpt-4o-mini", "messages": dangling})
    assert r.status_code == 400 and "preceeding message with 'tool_calls'" in r.json()["error"]["message"]


def test_models_list(client: httpx.Client) -> None:
    data = client.get("/v1/models", headers=AUTH).json()
    assert data["object"] == "list" and all(m["object"] == "model" for m in data["data"])


def test_json_schema_response_format(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["city", "n"],
    }
    body = {
        **body_with_system("s", "Plan a trip to Lisbon for 3 days"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "Trip", "schema": schema}},
    }
    content = chat(client, body).json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "Lisbon", "n": 3}


def test_official_sdk_parses_responses(clock: FakeClock) -> None:
    """openai is a locked test dependency: this must run (never skip) against the official SDK."""
    emu = Emulator(clock=clock)
    system = words(1500)
    with httpx.Client(transport=emu.transport()) as http:
        sdk = openai.OpenAI(api_key="sk-test", base_url="http://emulator/v1", http_client=http, max_retries=0)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
        first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert first.usage is not None and first.usage.prompt_tokens_details is not None
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        stream = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        silent = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        assert all(c.usage is None for c in silent)  # no include_usage, no usage chunk
        usage = chunks[-1].usage
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens // 128 * 128
